// The suite's own CLI excludes node_modules, so it is run programmatically from here.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.CONFORMANCE_TEST_URL
if (!baseUrl) {
  throw new Error("CONFORMANCE_TEST_URL must point at a running Rivulet")
}

runConformanceTests({ baseUrl })
