// A real `steward up` for the end-to-end tests: its own data dir, its own
// ports, a fresh PostgreSQL database (on the local server when one answers,
// else the private cluster steward starts in the fresh data dir), the
// console from dist/.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { existsSync, mkdtempSync, createWriteStream, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const root = resolve(import.meta.dirname, "..", "..");
export const consoleDir = resolve(import.meta.dirname, "..");
export const results = join(consoleDir, "test-results");

async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

export interface Running {
  gateway: string;
  env: NodeJS.ProcessEnv;
  binary: string;
  stop: () => Promise<void>;
}

function psql(sql: string): boolean {
  try {
    execFileSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAtc", sql], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}

export async function startSteward(): Promise<Running> {
  const binary = process.env.STEWARD_BIN ?? join(root, "target", "debug", "steward");
  if (!existsSync(binary)) throw new Error(`no steward binary at ${binary}: run cargo build -p steward (or set STEWARD_BIN)`);
  const dist = join(consoleDir, "dist");
  if (!existsSync(join(dist, "index.html"))) throw new Error("console/dist is not built: npm run build");
  rmSync(results, { recursive: true, force: true });
  mkdirSync(results, { recursive: true });
  const dataDir = mkdtempSync(join(tmpdir(), "steward-e2e-"));
  const db = `steward_e2e_${process.pid}_${Date.now()}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    STEWARD_DATA_DIR: dataDir,
    STEWARD_LOG: "warn",
    STEWARD_GATEWAY__CONSOLE_DIR: dist,
    // The tests sign in many times from one address.
    STEWARD_GATEWAY__RATE_LIMITS__SIGN_IN_PER_MINUTE: "600",
    STEWARD_GATEWAY__RATE_LIMITS__SIGN_IN_BURST: "100",
  };
  let dropDb = false;
  if (!env.STEWARD_DATABASE_URL && psql(`CREATE DATABASE ${db}`)) {
    env.STEWARD_DATABASE_URL = `postgres://postgres@127.0.0.1:5432/${db}`;
    dropDb = true;
  }
  const ports: Record<string, number> = {};
  for (const c of ["GATEWAY", "ACCOUNTS", "BILLING", "QUOTAS", "AUDIT", "NOTIFICATIONS"]) {
    ports[c] = await freePort();
    env[`STEWARD_${c}__LISTEN`] = `127.0.0.1:${ports[c]}`;
  }
  const log = createWriteStream(join(results, "steward.log"));
  const child: ChildProcess = spawn(binary, ["up"], { env, cwd: dataDir, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (b: Buffer) => {
    out += b.toString();
    log.write(b);
  });
  child.stderr!.on("data", (b: Buffer) => log.write(b));
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`steward up did not come up in 180 s:\n${out}`)), 180_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`steward up exited (${code}):\n${out}\n(see test-results/steward.log)`));
    });
    const check = setInterval(() => {
      if (out.includes("steward is up")) {
        clearInterval(check);
        clearTimeout(timer);
        ok();
      }
    }, 100);
  });
  child.removeAllListeners("exit");
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((ok) => child.once("exit", ok));
      child.kill("SIGTERM");
      const timeout = new Promise((ok) => setTimeout(ok, 20_000));
      await Promise.race([exited, timeout]);
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    log.end();
    if (dropDb) psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  };
  return { gateway: `http://127.0.0.1:${ports.GATEWAY}`, env, binary, stop };
}

/** `steward <args>` against the running suite's data dir and database. */
export function stewardCli(r: Running, args: string[]): string {
  return execFileSync(r.binary, args, { env: { ...r.env, STEWARD_LOG: "error" }, cwd: r.env.STEWARD_DATA_DIR, encoding: "utf8" });
}
