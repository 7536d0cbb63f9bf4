// vercel `resumable-stream` on Redis, driven headlessly by compare.py.
// Usage: node resumable_stream_server.mjs PORT REDIS_URL  (binds 127.0.0.1; prints "ready").
//
// GET /api/stream?messageId=ID&tokens=T&rate=R&startAt=UNIX_SECONDS
//   The first request for ID runs the (fake, stamped) generator inside the request, through
//   streamContext.resumableStream(); later requests for ID follow it through Redis pub/sub,
//   as the library intends. Events have Rivulet's shape:
//   data: {"type":"content","delta":"word@<unix seconds>"} ... data: {"type":"finish",...}
import http from "node:http"
import { createClient } from "redis"
import { createResumableStreamContext } from "resumable-stream"

const port = Number(process.argv[2] ?? 3000)
const redisUrl = process.argv[3] ?? "redis://127.0.0.1:6379"

const publisher = createClient({ url: redisUrl })
const subscriber = createClient({ url: redisUrl })
await Promise.all([publisher.connect(), subscriber.connect()])

const pending = new Set()
const streamContext = createResumableStreamContext({
  keyPrefix: `bench-rs-${process.pid}`,
  waitUntil: (promise) => {
    pending.add(promise)
    promise.finally(() => pending.delete(promise))
  },
  publisher,
  subscriber,
})

const WORDS = ["river", "stream", "delta", "bank", "current", "flow", "eddy", "reach"]
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function makeGenerator(tokens, rate, startAt) {
  return () =>
    new ReadableStream({
      async start(controller) {
        const first = startAt * 1000
        const interval = rate > 0 ? 1000 / rate : 0
        for (let i = 0; i < tokens; i++) {
          const due = first + i * interval
          const wait = due - Date.now()
          if (wait > 0) await sleep(wait)
          const stamp = (Date.now() / 1000).toFixed(6)
          const event = { type: "content", delta: `${WORDS[i % WORDS.length]}@${stamp}` }
          controller.enqueue(`data: ${JSON.stringify(event)}\n\n`)
        }
        controller.enqueue(`data: ${JSON.stringify({ type: "finish", reason: "stop" })}\n\n`)
        controller.close()
      },
    })
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://localhost")
  if (url.pathname === "/healthz") {
    res.writeHead(200, { "content-type": "text/plain" })
    res.end("ok")
    return
  }
  if (url.pathname !== "/api/stream") {
    res.writeHead(404)
    res.end()
    return
  }
  const id = url.searchParams.get("messageId") ?? "default"
  const tokens = Number(url.searchParams.get("tokens") ?? 100)
  const rate = Number(url.searchParams.get("rate") ?? 20)
  const startAt = Number(url.searchParams.get("startAt") ?? Date.now() / 1000)
  let stream
  try {
    stream = await streamContext.resumableStream(id, makeGenerator(tokens, rate, startAt))
  } catch (err) {
    res.writeHead(500, { "content-type": "text/plain" })
    res.end(String(err))
    return
  }
  if (!stream) {
    res.writeHead(422, { "content-type": "text/plain" })
    res.end("Stream is already done")
    return
  }
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
  const reader = stream.getReader()
  let open = true
  res.on("close", () => {
    open = false
    reader.cancel().catch(() => {})
  })
  try {
    while (open) {
      const { done, value } = await reader.read()
      if (done) break
      res.write(value)
    }
  } catch {
    // the reader went away
  }
  res.end()
})

server.keepAliveTimeout = 60_000
server.listen(port, "127.0.0.1", () => console.log(`ready http://127.0.0.1:${port}`))

const stop = async () => {
  server.close()
  await Promise.allSettled([...pending])
  await Promise.allSettled([publisher.quit(), subscriber.quit()])
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
