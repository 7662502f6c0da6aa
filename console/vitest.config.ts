import { defineConfig } from "vitest/config";

// Unit tests: formatting and pure helpers.
export default defineConfig({
  test: { include: ["src/**/*.test.ts", "e2e/**/*.test.ts"], environment: "node" },
});
