import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["conformance.test.ts"],
    reporters: ["default", "json"],
    outputFile: { json: process.env.CONFORMANCE_REPORT ?? "report.json" },
  },
})
