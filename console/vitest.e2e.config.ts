import { defineConfig } from "vitest/config";

// End-to-end: a real `steward up` (started by e2e/global-setup.ts with a
// fresh data dir and its own ports) driven through Debian's Chromium.
export default defineConfig({
  test: {
    include: ["e2e/**/*.e2e.ts"],
    globalSetup: ["e2e/global-setup.ts"],
    testTimeout: 90_000,
    hookTimeout: 240_000,
    fileParallelism: false,
    sequence: { concurrent: false },
    environment: "node",
  },
});
