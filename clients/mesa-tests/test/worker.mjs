// A portal worker in its own process, on the HTTP API: `node worker.mjs <http-url> <name>
// <mode> <max>`. It long-polls `mesa_portal_take` and prints each batch as a JSON line
// `{"acked": [...]}` after acknowledging it (`mode` ack), or — `mode` hold-second — acknowledges
// its first batch, then prints the second as `{"held": [...]}` without acknowledging it and
// waits to be killed: a worker that dies mid-stream.
const [url, name, mode, max] = process.argv.slice(2);

async function api(method, body) {
  const res = await fetch(`${url}/api/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method}: ${res.status} ${JSON.stringify(json)}`);
  return json.result;
}

let batches = 0;
for (;;) {
  const { events } = await api("mesa_portal_take", { worker: name, max: Number(max), wait_ms: 1000 });
  if (events.length === 0) continue;
  batches += 1;
  if (mode === "hold-second" && batches === 2) {
    process.stdout.write(JSON.stringify({ held: events }) + "\n");
    await new Promise(() => {}); // killed here, holding its events
  }
  await api("mesa_portal_ack", { ids: events.map((e) => e.id) });
  process.stdout.write(JSON.stringify({ acked: events }) + "\n");
}
