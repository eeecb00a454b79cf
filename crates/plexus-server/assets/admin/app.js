// The Plexus admin page: plain JavaScript modules, no framework. Everything it shows comes from
// the HTTP API's methods, called through `/admin/api/<method>` with the session cookie and the
// CSRF token; the live tail is the TypeScript client on the page's own observer connection
// (`/admin/ws`). Everything from the server is put into the page as text, never as HTML.

import { Client } from "/admin/client/index.js";
import { compact, lineChart } from "/admin/charts.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const WINDOW_MS = 5 * 60_000;
/** Entries kept in the live tail. */
const TAIL_MAX = 200;
/** Connections and channels asked for at once. */
const LIST_LIMIT = 100;
const CHANNELS_LIMIT = 500;
const CONN_ID = /^[0-9a-f]{8}-\d{1,19}$/;

let csrf = null;
let pollTimer = null;
/** The node that serves this page. */
let thisNode = null;

/** An element with attributes and children (strings become text nodes). */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const json = (value) => JSON.stringify(value, null, 2);

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function duration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

// ---- talking to the server ---------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function setLive(ok) {
  $("live").dataset.state = ok ? "ok" : "down";
  $("live-text").textContent = ok ? "live" : "offline";
}

function showBanner(text) {
  const banner = $("banner");
  banner.textContent = text ?? "";
  banner.hidden = !text;
}

/** `POST /admin/<path>`: the JSON answer, or an ApiError. A lost session shows the login. */
async function post(path, body = {}) {
  let response;
  try {
    response = await fetch(`/admin/${path}`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf ?? "" },
      body: JSON.stringify(body),
    });
  } catch {
    setLive(false);
    throw new ApiError(0, 0, "The server cannot be reached.");
  }
  setLive(true);
  const value = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== "login") {
    showLogin("Your session ended. Log in again.");
    throw new ApiError(401, value.error?.code ?? 0, "Not logged in.");
  }
  if (!response.ok) {
    throw new ApiError(response.status, value.error?.code ?? 0, value.error?.message ?? `HTTP ${response.status}`);
  }
  return value;
}

/** An API method: its `result`. */
const call = async (method, params = {}) => (await post(`api/${method}`, params)).result ?? {};

// ---- login and the frame -----------------------------------------------------------------

function showLogin(message) {
  stopPolling();
  stopTail();
  // The page's own connection goes with the session.
  tail.client?.disconnect();
  tail.client = null;
  tail.conn = null;
  csrf = null;
  $("booting").hidden = true;
  $("app").hidden = true;
  $("login").hidden = false;
  const error = $("login-error");
  error.textContent = message ?? "";
  error.hidden = !message;
  $("password").value = "";
  $("password").focus();
}

function showApp(session) {
  csrf = session.csrf;
  thisNode = session.node;
  $("booting").hidden = true;
  $("login").hidden = true;
  $("app").hidden = false;
  $("server-label").textContent = `node ${session.node} · v${session.version}${session.dev_mode ? " · development mode" : ""}`;
  setLive(true);
  startPolling();
  route();
}

async function boot() {
  try {
    const response = await fetch("/admin/session", { credentials: "same-origin" });
    const session = await response.json();
    if (session.authenticated) showApp(session);
    else showLogin();
  } catch {
    showLogin("The server cannot be reached. Reload the page to try again.");
  }
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const submit = $("login-submit");
  submit.disabled = true;
  try {
    await post("login", { password: $("password").value });
    const session = await (await fetch("/admin/session", { credentials: "same-origin" })).json();
    if (!session.authenticated) throw new ApiError(0, 0, "The browser did not keep the session cookie.");
    showApp(session);
  } catch (e) {
    const message =
      e.status === 401 ? "Wrong password."
      : e.status === 429 ? "Too many failed logins. Wait a minute, then try again."
      : e.message;
    showLogin(message);
  } finally {
    submit.disabled = false;
  }
});

$("logout").addEventListener("click", async () => {
  try {
    await post("logout");
  } catch {
    // Logged out or not, the page forgets the session.
  }
  showLogin("You are logged out.");
});

const PAGES = ["overview", "channels", "connections", "publish", "mailboxes"];

/** `#/page` or `#/channels/<name>`. */
function route() {
  if ($("app").hidden) return;
  const [, page = "overview", ...rest] = location.hash.split("/");
  const current = PAGES.includes(page) ? page : "overview";
  for (const name of PAGES) $(`page-${name}`).hidden = name !== current;
  for (const link of document.querySelectorAll(".nav a")) {
    if (link.dataset.page === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${current[0].toUpperCase()}${current.slice(1)} · Plexus admin`;
  if (current === "overview") renderOverview();
  if (current === "channels") {
    const name = rest.length ? decodeURIComponent(rest.join("/")) : null;
    showChannels(name);
  }
  if (current === "connections" && !connectionsLoaded) findConnections();
  if (current !== "channels") stopTail();
}
window.addEventListener("hashchange", route);

// ---- overview ----------------------------------------------------------------------------

const overview = {
  /** node id → its last report */
  last: new Map(),
  /** node id → messages per second, from its last two reports */
  rates: new Map(),
  connections: [],
  inRate: [],
  outRate: [],
  nodes: [],
  missing: [],
  error: null,
  at: 0,
};

function trim(points, now) {
  while (points.length && points[0].t < now - WINDOW_MS) points.shift();
}

async function poll() {
  try {
    const result = await call("nodes");
    const now = Date.now();
    overview.error = null;
    overview.nodes = result.nodes ?? [];
    overview.missing = result.missing ?? [];
    let totalIn = 0;
    let totalOut = 0;
    let connections = 0;
    const seen = new Set();
    for (const node of overview.nodes) {
      seen.add(node.node);
      connections += node.connections;
      const previous = overview.last.get(node.node);
      if (previous && node.at_ms > previous.at_ms) {
        const seconds = (node.at_ms - previous.at_ms) / 1000;
        const rate = {
          in: Math.max(0, node.messages_in - previous.messages_in) / seconds,
          out: Math.max(0, node.messages_out - previous.messages_out) / seconds,
        };
        overview.rates.set(node.node, rate);
      }
      overview.last.set(node.node, node);
      const rate = overview.rates.get(node.node);
      totalIn += rate?.in ?? 0;
      totalOut += rate?.out ?? 0;
    }
    for (const id of [...overview.last.keys()]) {
      if (!seen.has(id)) {
        overview.last.delete(id);
        overview.rates.delete(id);
      }
    }
    overview.connections.push({ t: now, v: connections });
    if (overview.rates.size) {
      overview.inRate.push({ t: now, v: totalIn });
      overview.outRate.push({ t: now, v: totalOut });
    }
    for (const points of [overview.connections, overview.inRate, overview.outRate]) trim(points, now);
    overview.at = now;
    showBanner(
      overview.missing.length
        ? `${overview.missing.length} node(s) did not answer in time: ${overview.missing.join(", ")}. Their numbers are missing.`
        : null,
    );
  } catch (e) {
    if (e.status === 401) return;
    overview.error = e.message;
    // The engine cannot list the nodes (Redis down?): this node still says how it is.
    const fallback = await call("info").catch(() => null);
    if (fallback) {
      overview.nodes = [
        {
          node: fallback.node,
          version: fallback.version,
          uptime_ms: fallback.uptime_ms,
          connections: fallback.connections,
          users: fallback.users,
          subscriptions: undefined,
          shutting_down: fallback.shutting_down,
          engine_healthy: fallback.engine.healthy,
          engine_detail: fallback.engine.detail,
        },
      ];
      overview.rates.clear();
      overview.at = Date.now();
    }
    showBanner(`Cannot ask every node (${e.message}).${fallback ? " Showing this node only." : ""}`);
  }
  if (!$("page-overview").hidden) renderOverview();
}

function startPolling() {
  stopPolling();
  poll();
  pollTimer = setInterval(poll, POLL_MS);
}

function stopPolling() {
  if (pollTimer) clearInterval(pollTimer);
  pollTimer = null;
}

function renderOverview() {
  const nodes = overview.nodes;
  const sum = (key) => nodes.reduce((n, node) => n + node[key], 0);
  const rates = [...overview.rates.values()];
  const known = nodes.length > 0;
  $("stat-nodes").textContent = known ? String(nodes.length) : "–";
  $("stat-connections").textContent = known ? compact(sum("connections")) : "–";
  const subscriptionsKnown = known && nodes.every((n) => n.subscriptions !== undefined);
  $("stat-subscriptions").textContent = subscriptionsKnown ? compact(sum("subscriptions")) : "–";
  $("stat-in").textContent = rates.length ? compact(rates.reduce((n, r) => n + r.in, 0)) : "–";
  $("stat-out").textContent = rates.length ? compact(rates.reduce((n, r) => n + r.out, 0)) : "–";
  const healthy = known && nodes.every((n) => n.engine_healthy);
  const engine = $("stat-engine");
  engine.textContent = !known ? "–" : healthy ? "healthy" : "degraded";
  engine.className = `value ${!known ? "" : healthy ? "ok" : "bad"}`;
  engine.title = nodes.map((n) => `${n.node}: ${n.engine_detail}`).join("\n");
  $("overview-updated").textContent = overview.at ? `updated ${new Date(overview.at).toLocaleTimeString()}` : "";
  $("nodes-missing").textContent = overview.missing.length ? `${overview.missing.length} not answering` : "";

  const body = $("nodes-table").tBodies[0];
  if (!known) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 9, class: "empty-line" }, overview.error ? `Cannot read the nodes: ${overview.error}` : "Waiting for the first answer…")));
  } else {
    body.replaceChildren(
      ...nodes.map((n) => {
        const rate = overview.rates.get(n.node);
        return h(
          "tr",
          {},
          h("td", { class: "nowrap" }, h("span", { class: "mono" }, n.node), n.node === thisNode ? h("span", { class: "pill accent", title: "the node serving this page" }, "this page") : null, n.shutting_down ? h("span", { class: "pill bad" }, "shutting down") : null),
          h("td", {}, n.version),
          h("td", {}, duration(n.uptime_ms)),
          h("td", { class: "num" }, String(n.connections)),
          h("td", { class: "num" }, String(n.users)),
          h("td", { class: "num" }, n.subscriptions === undefined ? "–" : String(n.subscriptions)),
          h("td", { class: "num" }, rate ? compact(rate.in) : "–"),
          h("td", { class: "num" }, rate ? compact(rate.out) : "–"),
          h("td", {}, h("span", { class: `pill ${n.engine_healthy ? "ok" : "bad"}`, title: n.engine_detail }, n.engine_healthy ? "healthy" : "degraded"), " ", h("span", { class: "muted small" }, n.engine_detail)),
        );
      }),
    );
  }
  const now = Date.now();
  // The charts span what the page has seen: at least a minute, at most WINDOW_MS.
  const first = overview.connections[0]?.t ?? now;
  const windowMs = Math.min(WINDOW_MS, Math.max(60_000, Math.ceil((now - first) / 60_000) * 60_000));
  lineChart($("chart-connections"), [{ name: "connections", color: "var(--in)", points: overview.connections }], { windowMs, now, integer: true });
  lineChart(
    $("chart-messages"),
    [
      { name: "in", color: "var(--in)", points: overview.inRate },
      { name: "out", color: "var(--out)", points: overview.outRate },
    ],
    { windowMs, now },
  );
}
window.addEventListener("resize", () => {
  if (!$("page-overview").hidden) renderOverview();
});

// ---- channels ----------------------------------------------------------------------------

let channels = [];
let channelsPrefix = null;
let currentChannel = null;

async function loadChannels(prefix) {
  channelsPrefix = prefix;
  const list = $("channel-list");
  try {
    const result = await call("channels", { prefix, limit: CHANNELS_LIMIT });
    channels = result.channels ?? [];
    const total = result.total ?? channels.length;
    $("channels-count").textContent =
      total === 0 ? "" : total > channels.length ? `${channels.length} of ${total} channels` : `${total} channel${total === 1 ? "" : "s"} with subscribers`;
    if (!channels.length) {
      list.replaceChildren(h("li", { class: "empty-line" }, prefix ? `No channel with subscribers starts with “${prefix}”.` : "No channel has a subscriber right now."));
    } else {
      list.replaceChildren(
        ...channels.map((c) =>
          h(
            "li",
            {},
            h(
              "a",
              { href: `#/channels/${encodeURIComponent(c.channel)}`, "aria-current": c.channel === currentChannel ? "true" : null, "data-channel": c.channel },
              h("span", { class: "name" }, c.channel),
              h("span", { class: "pill accent", title: "subscribers" }, String(c.subscribers)),
            ),
          ),
        ),
      );
    }
  } catch (e) {
    if (e.status === 401) return;
    list.replaceChildren(h("li", { class: "error-line" }, `Cannot list the channels: ${e.message}`));
  }
}

$("channel-search").addEventListener("submit", (event) => {
  event.preventDefault();
  loadChannels($("channel-prefix").value.trim());
});

$("channel-open").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("channel-name").value.trim();
  if (name) location.hash = `#/channels/${encodeURIComponent(name)}`;
});

function showChannels(name) {
  loadChannels(channelsPrefix ?? "");
  if (name === currentChannel && name !== null) return;
  if (currentChannel !== null && name !== currentChannel) stopTail();
  currentChannel = name;
  $("channel-empty").hidden = name !== null;
  $("channel-view").hidden = name === null;
  if (name === null) return;
  $("channel-title").textContent = name;
  $("tail").replaceChildren();
  loadChannel(name);
}

function publicationEntry(p, fresh = false) {
  const meta = [h("span", {}, `#${p.offset}`)];
  if (p.event) meta.push(h("span", { class: "pill" }, p.event));
  if (p.publisher) meta.push(h("span", {}, `from ${p.publisher.user ?? "anonymous"} (${p.publisher.conn})`));
  if (fresh) meta.push(h("span", {}, `received ${new Date().toLocaleTimeString()}`));
  const body = p.binary !== undefined ? `<${p.binary.length ?? "?"} bytes of binary data>` : json(p.data);
  return h("li", { class: `entry${fresh ? " fresh" : ""}`, "data-offset": p.offset }, h("div", { class: "meta" }, meta), h("pre", {}, body));
}

async function loadChannel(name) {
  const subscribers = channels.find((c) => c.channel === name)?.subscribers;
  $("channel-subscribers").textContent = subscribers === undefined ? "" : `${subscribers} subscriber${subscribers === 1 ? "" : "s"}`;
  const presence = $("presence");
  const history = $("history");
  presence.replaceChildren(h("p", { class: "empty-line" }, "Loading…"));
  history.replaceChildren(h("p", { class: "empty-line" }, "Loading…"));
  const [members, page] = await Promise.allSettled([call("presence", { channel: name }), call("history", { channel: name, limit: 20, reverse: true })]);
  if (name !== currentChannel) return;
  if (members.status === "fulfilled") {
    const list = members.value.members ?? [];
    $("presence-count").textContent = list.length ? `(${list.length})` : "";
    presence.replaceChildren(
      ...(list.length
        ? list.map((m) =>
            h(
              "div",
              { class: "member" },
              h("span", { class: "who" }, m.user ?? "anonymous"),
              h("a", { class: "chip", href: "#/connections", "data-conn": m.conn, onclick: () => queueConnection(m.conn) }, m.conn),
              m.state !== undefined ? h("span", { class: "pill accent", title: "presence state" }, `state ${JSON.stringify(m.state)}`) : null,
              m.info !== undefined ? h("span", { class: "muted small" }, `info ${JSON.stringify(m.info)}`) : null,
            ),
          )
        : [h("p", { class: "empty-line" }, "Nobody is present.")]),
    );
  } else {
    $("presence-count").textContent = "";
    presence.replaceChildren(h("p", { class: "empty-line" }, members.reason.message));
  }
  if (page.status === "fulfilled") {
    const publications = page.value.publications ?? [];
    history.replaceChildren(
      publications.length
        ? h("ol", { class: "feed" }, publications.map((p) => publicationEntry({ ...p, channel: name })))
        : h("p", { class: "empty-line" }, "No publication kept yet."),
      h("p", { class: "muted small" }, `Current position: offset ${page.value.offset}, epoch ${page.value.epoch}`),
    );
  } else {
    history.replaceChildren(h("p", { class: "empty-line" }, page.reason.message));
  }
}

// The live tail: the page's own connection, subscribed server-side by `tail`.
const tail = { client: null, conn: null, channel: null };

async function tailClient() {
  if (tail.client) return tail.client;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const client = new Client({ url: `${scheme}://${location.host}/admin/ws`, backoff: { minDelayMs: 500, maxDelayMs: 5000 } });
  tail.client = client;
  client.on("publication", (p) => {
    if (p.channel !== tail.channel) return;
    const feed = $("tail");
    feed.prepend(publicationEntry(p, true));
    while (feed.children.length > TAIL_MAX) feed.lastElementChild.remove();
    $("tail-status").textContent = `Live: ${feed.children.length} publication${feed.children.length === 1 ? "" : "s"} shown (the newest first, at most ${TAIL_MAX}).`;
  });
  client.on("connected", async (event) => {
    tail.conn = event.info?.conn ?? tail.conn;
    // A new connection after a reconnect: subscribe it again.
    if (event.reconnected && tail.channel) {
      await call("tail", { channel: tail.channel, conn: tail.conn }).catch(() => {});
    }
  });
  client.on("disconnected", () => {
    if (tail.channel) $("tail-status").textContent = "Connection lost; reconnecting…";
  });
  const info = await client.connect();
  tail.conn = info.conn;
  return client;
}

async function startTail() {
  const channel = currentChannel;
  const button = $("tail-toggle");
  button.disabled = true;
  try {
    await tailClient();
    await call("tail", { channel, conn: tail.conn });
    tail.channel = channel;
    button.textContent = "Stop";
    $("tail-status").textContent = "Live: waiting for publications…";
  } catch (e) {
    $("tail-status").textContent = `Cannot start the live tail: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

function stopTail() {
  if (tail.channel && tail.conn) call("untail", { channel: tail.channel, conn: tail.conn }).catch(() => {});
  tail.channel = null;
  $("tail-toggle").textContent = "Start";
  $("tail-status").textContent = "Stopped. Publications appear here as they are published.";
}

$("tail-toggle").addEventListener("click", () => (tail.channel ? stopTail() : startTail()));

// ---- connections -------------------------------------------------------------------------

let connectionsLoaded = false;

function queueConnection(conn) {
  $("conn-query").value = conn;
  connectionsLoaded = false;
}

function fact(label, value) {
  return h("div", {}, h("dt", {}, label), h("dd", {}, value));
}

function connectionCard(c) {
  const subscriptions = c.subscriptions.length
    ? h("div", { class: "chips" }, c.subscriptions.map((s) => h("a", { class: "chip", href: `#/channels/${encodeURIComponent(s)}` }, s)), c.subscription_count > c.subscriptions.length ? h("span", { class: "muted small" }, `+${c.subscription_count - c.subscriptions.length} more`) : null)
    : h("span", { class: "muted" }, "none");
  const metadata = Object.keys(c.metadata ?? {}).length;
  return h(
    "article",
    { class: "conn", "data-conn": c.conn },
    h(
      "div",
      { class: "conn-head" },
      h("span", { class: "id" }, c.conn),
      h("span", { class: "pill accent" }, c.user ?? "anonymous"),
      h("span", { class: "pill" }, `${c.dialect} · ${c.transport}`),
      h("span", { class: "spacer" }),
      h("button", { type: "button", class: "danger-soft small", "data-action": "disconnect", onclick: () => askDisconnect(c.conn) }, "Disconnect"),
    ),
    h(
      "dl",
      { class: "facts" },
      fact("Node", h("span", { class: "mono" }, c.node)),
      fact("Opened", h("span", { title: new Date(c.opened_ms).toLocaleString() }, ago(c.opened_ms))),
      fact("Latency", c.latency_ms === undefined ? "not measured yet" : `${c.latency_ms.toFixed(1)} ms`),
      fact("Peer", c.peer ?? "–"),
      fact("Queued", `${compact(c.queued_bytes)} bytes`),
      fact("Subscriptions", String(c.subscription_count)),
    ),
    h("div", { class: "facts-row" }, h("span", { class: "facts-label" }, "Channels"), subscriptions),
    h("details", { class: "meta-json" }, h("summary", {}, metadata ? `Metadata (${metadata} key${metadata === 1 ? "" : "s"})` : "Metadata (none)"), h("pre", { class: "json" }, json(c.metadata ?? {}))),
  );
}

async function findConnections() {
  connectionsLoaded = true;
  const query = $("conn-query").value.trim();
  const params = { limit: LIST_LIMIT };
  if (CONN_ID.test(query)) params.conn = query;
  else if (query) params.user = query;
  const results = $("conn-results");
  results.replaceChildren(h("p", { class: "empty-line" }, "Asking every node…"));
  try {
    const result = await call("connections", params);
    const list = result.connections ?? [];
    const missing = result.missing ?? [];
    $("conn-count").textContent =
      (list.length ? `${list.length} connection${list.length === 1 ? "" : "s"}${result.truncated ? ` (the first ${list.length}; narrow the search)` : ""}` : "") +
      (missing.length ? ` · ${missing.length} node(s) did not answer: ${missing.join(", ")}` : "");
    results.replaceChildren(
      ...(list.length
        ? list.map(connectionCard)
        : [h("div", { class: "empty" }, h("h2", {}, "No connection found"), h("p", {}, query ? `Nobody is connected as “${query}” on any node.` : "No client is connected to any node."))]),
    );
  } catch (e) {
    if (e.status === 401) return;
    $("conn-count").textContent = "";
    results.replaceChildren(h("p", { class: "error-line" }, `Cannot search: ${e.message}`));
  }
}

$("conn-search").addEventListener("submit", (event) => {
  event.preventDefault();
  findConnections();
});

function askDisconnect(conn) {
  const dialog = $("disconnect-dialog");
  $("disconnect-conn").textContent = conn;
  $("disconnect-reason").value = "disconnected by an operator";
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "confirm") return;
    const reason = $("disconnect-reason").value.trim() || "disconnected by an operator";
    try {
      await call("disconnect", { conn, reason });
      $("conn-count").textContent = `Disconnected ${conn}.`;
      const card = document.querySelector(`article.conn[data-conn="${CSS.escape(conn)}"]`);
      card?.remove();
    } catch (e) {
      $("conn-count").textContent = `Cannot disconnect ${conn}: ${e.message}`;
    }
  };
  dialog.showModal();
}

// ---- publish -----------------------------------------------------------------------------

/** Whether the editor holds JSON; says where it does not. */
function checkEditor() {
  const text = $("pub-data").value;
  const check = $("pub-check");
  let ok = true;
  try {
    JSON.parse(text);
    check.textContent = "Valid JSON";
  } catch (e) {
    ok = false;
    check.textContent = text.trim() ? `Not JSON: ${e.message}` : "Enter a JSON value, e.g. {\"text\": \"hi\"} or 42";
  }
  check.dataset.ok = String(ok);
  $("pub-data").setAttribute("aria-invalid", String(!ok));
  $("pub-submit").disabled = !ok;
  return ok;
}

$("pub-data").addEventListener("input", checkEditor);
$("pub-data").addEventListener("keydown", (event) => {
  // Tab indents in the editor instead of leaving it.
  if (event.key !== "Tab" || event.shiftKey) return;
  event.preventDefault();
  const area = event.target;
  area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
  checkEditor();
});
$("pub-format").addEventListener("click", () => {
  if (!checkEditor()) return;
  $("pub-data").value = json(JSON.parse($("pub-data").value));
});

$("publish-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!checkEditor()) return;
  const channel = $("pub-channel").value.trim();
  const eventName = $("pub-event").value.trim();
  const result = $("pub-result");
  const params = { channel, data: JSON.parse($("pub-data").value) };
  if (eventName) params.event = eventName;
  $("pub-submit").disabled = true;
  try {
    const position = await call("publish", params);
    result.className = "result ok";
    result.replaceChildren(
      "Published to ",
      h("a", { href: `#/channels/${encodeURIComponent(channel)}`, class: "mono" }, channel),
      ` at offset ${position.offset} (epoch ${position.epoch}).`,
    );
  } catch (e) {
    result.className = "result bad";
    result.textContent = `Not published: ${e.message}`;
  } finally {
    result.hidden = false;
    checkEditor();
  }
});

// ---- mailboxes ---------------------------------------------------------------------------

let mailboxUser = null;

async function openMailbox(user) {
  mailboxUser = user;
  const view = $("mailbox-view");
  view.replaceChildren(h("p", { class: "empty-line" }, "Loading…"));
  try {
    const mailbox = await call("mailbox", { user, limit: 100 });
    if (user !== mailboxUser) return;
    const messages = mailbox.messages ?? [];
    view.replaceChildren(
      h(
        "div",
        { class: "conn-head" },
        h("span", { class: "id" }, user),
        h("span", { class: `pill ${mailbox.registered ? "ok" : ""}` }, mailbox.registered ? "has a mailbox" : "no mailbox"),
        h("span", { class: "pill accent", id: "mailbox-pending" }, `${mailbox.pending} waiting`),
      ),
      messages.length
        ? h(
            "ol",
            { class: "feed mail-feed" },
            messages.map((m) =>
              h(
                "li",
                { class: "entry", "data-seq": m.seq },
                h("div", { class: "meta" }, h("span", {}, `#${m.seq}`), h("span", { title: new Date(m.sent_ms).toLocaleString() }, `sent ${ago(m.sent_ms)}`)),
                h("pre", {}, m.binary !== undefined ? "<binary data>" : json(m.data)),
              ),
            ),
            mailbox.pending > messages.length ? h("li", { class: "muted small" }, `and ${mailbox.pending - messages.length} more`) : null,
          )
        : h("p", { class: "empty-line" }, mailbox.registered ? "Nothing waits: every message was acknowledged or expired." : "This user has no mailbox: it has not connected with an identity lately, and a durable message to it is not stored."),
    );
    $("durable-user").textContent = user;
    $("durable-form").hidden = false;
  } catch (e) {
    if (e.status === 401) return;
    view.replaceChildren(h("p", { class: "error-line" }, `Cannot read the mailbox: ${e.message}`));
  }
}

$("mailbox-search").addEventListener("submit", (event) => {
  event.preventDefault();
  const user = $("mailbox-user").value.trim();
  $("durable-result").hidden = true;
  if (user) openMailbox(user);
});

function checkDurable() {
  const check = $("durable-check");
  let ok = true;
  try {
    JSON.parse($("durable-data").value);
    check.textContent = "Valid JSON";
  } catch (e) {
    ok = false;
    check.textContent = `Not JSON: ${e.message}`;
  }
  check.dataset.ok = String(ok);
  $("durable-data").setAttribute("aria-invalid", String(!ok));
  $("durable-submit").disabled = !ok;
  return ok;
}
$("durable-data").addEventListener("input", checkDurable);

$("durable-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!checkDurable() || !mailboxUser) return;
  const result = $("durable-result");
  try {
    const sent = await call("send_durable", { user: mailboxUser, data: JSON.parse($("durable-data").value) });
    result.className = sent.registered ? "result ok" : "result bad";
    result.textContent = sent.registered ? `Sent as message #${sent.seq}.` : "Not stored: this user has no mailbox.";
    await openMailbox(mailboxUser);
  } catch (e) {
    result.className = "result bad";
    result.textContent = `Not sent: ${e.message}`;
  }
  result.hidden = false;
});

checkEditor();
checkDurable();
boot();
