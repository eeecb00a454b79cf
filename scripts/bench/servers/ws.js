// Plain WebSocket peer for Plexus's benchmarks, with the `ws` library: one Node process
// (single-threaded), no compression.
//
//   /echo                sends every message back
//   /broadcast           receives what publishers send
//   /broadcast?pub=1     a publisher: each message goes to every /broadcast receiver
//
// Usage: node servers/ws.js [port]   (default 3001, listens on 127.0.0.1)
"use strict";
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2] || process.env.PORT || 3001);
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  perMessageDeflate: false,
  maxPayload: 1 << 20,
  clientTracking: false,
});
const receivers = new Set();

wss.on("connection", (ws, req) => {
  const url = new URL(req.url, "http://localhost");
  if (url.pathname === "/echo") {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  } else if (url.pathname === "/broadcast" && url.searchParams.get("pub") === "1") {
    ws.on("message", (data, isBinary) => {
      for (const r of receivers) r.send(data, { binary: isBinary });
    });
  } else if (url.pathname === "/broadcast") {
    receivers.add(ws);
    ws.on("close", () => receivers.delete(ws));
  } else {
    ws.close(1008, "unknown path");
  }
});

wss.on("listening", () => {
  console.log(`ws ${require("ws/package.json").version} listening on 127.0.0.1:${port}`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(0));
