// The Durable Streams reference server (@durable-streams/server), in-memory, for compare.py.
// Usage: node durable_streams_server.mjs PORT  (binds 127.0.0.1; prints "ready <url>").
import { DurableStreamTestServer } from "@durable-streams/server"

const port = Number(process.argv[2] ?? 4437)
const server = new DurableStreamTestServer({ port, host: "127.0.0.1", compression: false })
const url = await server.start()
console.log(`ready ${url}`)

const stop = async () => {
  await server.stop()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
