// Line charts drawn as SVG by hand: a few series of (time, value) points over a fixed window
// ending now. No library: the admin page embeds everything it runs.

const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A round step: 1, 2 or 5 times a power of ten, at least `x` (at least 1 for counts). */
function niceStep(x, integer) {
  if (!(x > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(x));
  for (const step of [1, 2, 5, 10]) {
    const value = step * power;
    if (value >= x && (!integer || value >= 1)) return value;
  }
  return integer ? Math.max(1, 10 * power) : 10 * power;
}

/** Four round steps from 0 that reach `max`: the axis' top. */
export function niceMax(max, integer = false) {
  return 4 * niceStep(max / 4, integer);
}

/** Short numbers for axes and cards: 950, 1.2k, 3.4M. */
export function compact(n) {
  if (!Number.isFinite(n)) return "–";
  const abs = Math.abs(n);
  if (abs >= 1e6) return `${(n / 1e6).toFixed(abs >= 1e7 ? 0 : 1)}M`;
  if (abs >= 1e3) return `${(n / 1e3).toFixed(abs >= 1e4 ? 0 : 1)}k`;
  if (abs > 0 && abs < 10 && !Number.isInteger(n)) return n.toFixed(1);
  return String(Math.round(n));
}

/**
 * Draws `series` ([{name, color, points: [{t, v}]}], `t` in ms) into `container`, over the
 * `windowMs` ending at `now`. Redraws from scratch: the charts are small.
 */
export function lineChart(container, series, { windowMs, now = Date.now(), empty = "Collecting data…", integer = false }) {
  const width = Math.max(container.clientWidth, 200);
  const height = Math.max(container.clientHeight, 120);
  const pad = { left: 40, right: 8, top: 8, bottom: 20 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  const start = now - windowMs;
  const visible = series.map((s) => ({ ...s, points: s.points.filter((p) => p.t >= start) }));
  const max = niceMax(Math.max(0, ...visible.flatMap((s) => s.points.map((p) => p.v))), integer);
  const x = (t) => pad.left + ((t - start) / windowMs) * w;
  const y = (v) => pad.top + h - (v / max) * h;

  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(el("line", { class: "grid", x1: pad.left, x2: pad.left + w, y1: y(v), y2: y(v) }));
    svg.append(el("text", { class: "axis", x: pad.left - 6, y: y(v) + 4, "text-anchor": "end" }, compact(v)));
  }
  // A tick every 15 s, 30 s or minute, whichever gives at most six.
  const step = [15_000, 30_000, 60_000, 120_000].find((ms) => windowMs / ms <= 6) ?? 300_000;
  const ticks = Math.floor(windowMs / step);
  for (let i = 0; i <= ticks; i++) {
    const ago = i * step;
    const label = i === 0 ? "now" : ago < 60_000 || ago % 60_000 ? `−${ago / 1000}s` : `−${ago / 60_000}m`;
    const anchor = i === 0 ? "end" : i === ticks && ago === windowMs ? "start" : "middle";
    svg.append(el("text", { class: "axis", x: x(now - ago), y: height - 4, "text-anchor": anchor }, label));
  }
  let drawn = false;
  for (const s of visible) {
    if (s.points.length < 2) continue;
    drawn = true;
    const path = s.points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join("");
    const first = s.points[0];
    const last = s.points[s.points.length - 1];
    svg.append(el("path", { class: "area", fill: s.color, d: `${path}L${x(last.t).toFixed(1)},${y(0)}L${x(first.t).toFixed(1)},${y(0)}Z` }));
    const line = el("path", { class: "line", stroke: s.color, d: path });
    line.append(el("title", {}, s.name));
    svg.append(line);
  }
  if (!drawn) {
    svg.append(el("text", { class: "empty-chart", x: pad.left + w / 2, y: pad.top + h / 2, "text-anchor": "middle" }, empty));
  }
  container.replaceChildren(svg);
}
