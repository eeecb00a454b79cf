// Socket.IO 4 peer for Plexus's benchmarks: one Node process (single-threaded), WebSocket
// transport only, the default in-memory adapter.
//
//   join  (room, ack)        joins a room, acks "ok"
//   pub   (room, data, ack)  emits "pub" with data to everyone in the room, then acks
//   echo  (data, ack)        acks with data
//
// Usage: node servers/socketio.js [port]   (default 3000, listens on 127.0.0.1)
"use strict";
const http = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || process.env.PORT || 3000);
const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
  // Defaults written out, so the comparison states what it measured.
  perMessageDeflate: false,
  maxHttpBufferSize: 1e6,
  pingInterval: 25000,
  pingTimeout: 20000,
});

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack("ok");
  });
  socket.on("pub", (room, data, ack) => {
    io.to(room).emit("pub", data);
    if (typeof ack === "function") ack();
  });
  socket.on("echo", (data, ack) => {
    if (typeof ack === "function") ack(data);
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`socket.io ${require("socket.io/package.json").version} listening on 127.0.0.1:${port}`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(0));
