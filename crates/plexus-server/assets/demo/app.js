// The demo chat of `plexus serve` (development mode), built on the TypeScript client
// (clients/typescript, compiled into ./client/). One room is one channel `chat:<room>`:
// - joining subscribes with `history: 50`, so the room's recent messages show at once;
// - the name travels in each message and in this connection's presence state, which the client
//   sets again by itself after every reconnect;
// - who is here comes from `presence`, kept current by join, leave and state events;
// - after a reconnect the client recovers what was missed; when it cannot (a restarted
//   in-memory server has a new epoch) the page says why in words, reloads the recent history,
//   and after a restart draws a line where the lost history ends.

import { Client } from "./client/index.js";

const $ = (id) => document.getElementById(id);
const HISTORY = 50;

const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
const client = new Client({ url, backoff: { minDelayMs: 500, maxDelayMs: 5000 } });
window.plexusDemo = { client, recoveryText };

let name = "";
let sub = null;
/** Presence: connection id → display name. */
const members = new Map();

// ---- connection state ------------------------------------------------------------------------

let retry = null;
function renderStatus() {
  const state = client.state;
  $("status").dataset.state = state;
  let text = state;
  if (state === "connecting" && retry && retry.attempt > 1) {
    text = `reconnecting (attempt ${retry.attempt}, in ${(retry.delayMs / 1000).toFixed(1)} s)`;
  } else if (state === "connecting") {
    text = "connecting…";
  } else if (state === "closed") {
    text = "closed — reload the page";
  }
  $("status-text").textContent = text;
}
client.on("state", renderStatus);
client.on("connecting", (e) => {
  retry = e;
  renderStatus();
});
client.on("connected", () => {
  retry = null;
  renderStatus();
});
client.on("disconnected", (e) => {
  $("latency").textContent = "";
  // Who is here is read again once the subscription is restored.
  members.clear();
  renderPresence();
  const how = e.willReconnect ? "reconnecting…" : "reload the page to connect again.";
  if (sub) notice(`Connection lost${e.code ? ` (close code ${e.code})` : ""}; ${how}`, "warn");
});
client.on("latency", ({ rttMs }) => {
  $("latency").textContent = `${rttMs.toFixed(1)} ms`;
});
client.start();
renderStatus();

// ---- messages --------------------------------------------------------------------------------

function scrollDown() {
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}

function notice(text, kind = "") {
  const li = document.createElement("li");
  li.className = `notice ${kind}`.trim();
  li.textContent = text;
  $("messages").append(li);
  scrollDown();
  return li;
}

/**
 * What a failed recovery means for the reader, for each reason of protocol §4.6 (the code itself
 * is for developers: it is in the notice's tooltip).
 */
function recoveryText(reason) {
  switch (reason) {
    case "epoch_changed":
      return "The server restarted and lost this room's history: messages you missed before the restart are gone. Below the line: the room since the restart.";
    case "history_trimmed":
      return "Some of the messages you missed are no longer kept by the server. Showing the room's recent messages.";
    case "too_many":
      return "You missed too many messages to catch up one by one. Showing the room's recent messages.";
    case "invalid_position":
      return "The server did not recognise where you left off. Showing the room's recent messages.";
    case "not_available":
      return "This room keeps no history: messages sent while you were away cannot be shown.";
    default:
      return "The messages you missed could not be recovered. Showing the room's recent messages.";
  }
}

/** The line below which the room's messages come after a server restart. */
function divider(text) {
  const li = document.createElement("li");
  li.className = "divider";
  li.setAttribute("role", "separator");
  const label = document.createElement("span");
  label.textContent = text;
  li.append(label);
  $("messages").append(li);
  scrollDown();
}

/** Shows a publication once, in offset order among the messages of its epoch. */
function showMessage(p) {
  const list = $("messages");
  const key = `${p.epoch}:${p.offset}`;
  if (list.querySelector(`li[data-key="${CSS.escape(key)}"]`)) return;
  const data = p.data && typeof p.data === "object" ? p.data : { text: String(p.data ?? "") };
  const li = document.createElement("li");
  li.dataset.key = key;
  li.dataset.epoch = p.epoch;
  li.dataset.offset = String(p.offset);
  if (p.publisher && p.publisher.conn === client.info?.conn) li.classList.add("mine");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = String(data.name ?? "anonymous");
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = String(data.text ?? "");
  li.append(who, text);
  if (typeof data.at === "number") {
    const when = document.createElement("time");
    when.className = "when";
    when.textContent = new Date(data.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    li.append(when);
  }
  const later = [...list.querySelectorAll("li[data-epoch]")].find(
    (other) => other.dataset.epoch === p.epoch && Number(other.dataset.offset) > p.offset,
  );
  list.insertBefore(li, later ?? null);
  scrollDown();
}

// ---- presence --------------------------------------------------------------------------------

function renderPresence() {
  const list = $("presence");
  list.replaceChildren();
  const me = client.info?.conn;
  const entries = [...members.entries()].sort((a, b) => a[1].localeCompare(b[1]));
  for (const [conn, who] of entries) {
    const li = document.createElement("li");
    li.dataset.conn = conn;
    li.textContent = conn === me ? `${who} (you)` : who;
    if (conn === me) li.classList.add("me");
    list.append(li);
  }
  $("presence-count").textContent = `(${members.size})`;
}

function nameOf(state) {
  return state && typeof state === "object" && typeof state.name === "string" ? state.name : "joining…";
}

async function refreshPresence(current) {
  try {
    const list = await current.presence();
    if (current !== sub) return;
    members.clear();
    for (const m of list) members.set(m.conn, nameOf(m.state));
    renderPresence();
  } catch (e) {
    console.warn("presence failed", e);
  }
}

// ---- joining a room --------------------------------------------------------------------------

async function join(room) {
  if (sub) {
    const old = sub;
    sub = null;
    await old.unsubscribe().catch(() => {});
  }
  $("messages").replaceChildren();
  members.clear();
  renderPresence();
  $("room-name").textContent = room;
  $("chat").hidden = false;

  const current = client.subscribe(`chat:${room}`, { history: HISTORY });
  sub = current;
  current.on("subscribed", async (e) => {
    if (!e.resubscribed) {
      e.history.forEach(showMessage);
      if (e.history.length === 0) notice(`You joined #${room}. Nobody has written here yet.`);
    } else if (e.recovered === true) {
      notice(`Reconnected: ${e.missed} missed message${e.missed === 1 ? "" : "s"} recovered.`);
    } else {
      // The server could not replay what was missed; what it has now is in its history. After
      // a restart (a new epoch) the new epoch's messages go below a line: nothing joins the
      // two.
      notice(`Reconnected. ${recoveryText(e.reason)}`, "warn").title =
        `recovery failed: ${e.reason ?? "no reason given"}`;
      if (e.reason === "epoch_changed") divider("Server restarted — earlier history lost");
      if (e.reason === "not_available") return refreshPresence(current);
      try {
        const page = await current.history({ limit: HISTORY, reverse: true });
        if (current !== sub) return;
        page.publications.reverse().forEach(showMessage);
      } catch (error) {
        notice(`Could not load the history: ${error.message}`, "warn");
      }
    }
    await refreshPresence(current);
  });
  current.on("publication", showMessage);
  current.on("join", (e) => {
    if (!members.has(e.conn)) members.set(e.conn, "joining…");
    renderPresence();
  });
  current.on("leave", (e) => {
    members.delete(e.conn);
    renderPresence();
  });
  current.on("presenceState", (e) => {
    members.set(e.conn, nameOf(e.state));
    renderPresence();
  });
  current.on("unsubscribed", (e) => {
    if (e.reason !== "client") notice(`Left the room: ${e.message ?? e.error?.message ?? e.reason}`, "warn");
  });
  // Remembered by the client and set again after every reconnect.
  current.setPresenceState({ name }).catch((e) => console.warn("presence state failed", e));
  current.ready.catch((e) => notice(`Cannot join: ${e.message}`, "warn"));
  $("text").focus();
}

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  name = $("name").value.trim() || "anonymous";
  const room = $("room").value.trim() || "lobby";
  localStorage.setItem("plexus-demo-name", name);
  history.replaceState(null, "", `?room=${encodeURIComponent(room)}`);
  void join(room);
});

$("compose").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("text");
  const text = input.value.trim();
  if (!text || !sub) return;
  input.value = "";
  try {
    // While disconnected, this waits in the client's offline queue (10 s) and goes out after
    // the reconnect.
    await sub.publish({ name, text, at: Date.now() });
  } catch (e) {
    notice(`Not sent (${e.kind}${e.code ? ` ${e.code}` : ""}): ${text}`, "warn");
  }
});

const params = new URLSearchParams(location.search);
$("name").value = params.get("name") ?? localStorage.getItem("plexus-demo-name") ?? "";
if (params.get("room")) $("room").value = params.get("room");
