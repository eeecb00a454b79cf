// A separate process that runs `@cryb/mesa`'s own Dispatcher, as a Mesa application's worker
// would: `node dispatch.mjs <redis-url> <namespace|-> <json>`, where json is a list of
// `{"message": {"op", "d", "t"}, "recipients", "excluding"}` or `{"event": "DISCONNECT_CLIENT",
// "recipients"}`. Exits once every publish was written.
import mesa from "@cryb/mesa";

const { Dispatcher, DispatchEvent, Message } = mesa;
const [url, namespace, json] = process.argv.slice(2);
const dispatcher = new Dispatcher(url, namespace === "-" ? {} : { namespace });
for (const item of JSON.parse(json)) {
  if (item.event) {
    dispatcher.dispatch(new DispatchEvent(item.event), item.recipients);
  } else {
    const { op, d, t } = item.message;
    dispatcher.dispatch(new Message(op, d, t), item.recipients, item.excluding);
  }
}
// With sync off the Dispatcher publishes in the same tick; QUIT runs after the queued PUBLISHes.
await dispatcher.publisher.quit();
await dispatcher.redis.quit();
