import type { TestProject } from "vitest/node";
import { startSteward, type Running } from "./steward";
import { seed, type Seeded } from "./seed";

declare module "vitest" {
  export interface ProvidedContext {
    seeded: Seeded;
  }
}

let running: Running | undefined;

export async function setup(project: TestProject) {
  running = await startSteward();
  project.provide("seeded", await seed(running));
}

export async function teardown() {
  await running?.stop();
}
