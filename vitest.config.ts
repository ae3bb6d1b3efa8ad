import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.spec.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration suites start their own nats-server and containers; two cores are all we have.
    fileParallelism: true,
    maxWorkers: 2,
    pool: "forks",
  },
});
