// herd live view: polls api/state and redraws. No dependencies, so that the
// page works offline; charts are inline SVG.
"use strict";

const POLL_MS = 1500;
const SVG = "http://www.w3.org/2000/svg";
// The job shown in detail: from ?job=ID, then the row last clicked. Empty:
// the coordinator picks (newest running job, else newest).
let selected = new URLSearchParams(location.search).get("job") || "";
let timer = 0;

// h builds an element: attrs are attributes (on* keys become listeners),
// kids are nodes or strings (always text, never parsed as HTML).
function h(tag, attrs, ...kids) {
  const el = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function fill(id, ...nodes) {
  const el = document.getElementById(id);
  el.replaceChildren(...nodes);
  return el;
}

function fmtLoss(v) { return Number.isFinite(v) ? v.toFixed(4) : "–"; }
function fmtRate(v) {
  if (!Number.isFinite(v) || v <= 0) return "–";
  if (v >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (v >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return v.toFixed(0);
}
function fmtDur(s) {
  if (!Number.isFinite(s) || s < 0) return "–";
  s = Math.round(s);
  const hh = Math.floor(s / 3600), mm = Math.floor(s / 60) % 60, ss = s % 60;
  if (hh > 0) return hh + "h" + String(mm).padStart(2, "0") + "m";
  if (mm > 0) return mm + "m" + String(ss).padStart(2, "0") + "s";
  return ss + "s";
}
function fmtTime(t) {
  const d = new Date(t);
  return isNaN(d) || d.getFullYear() < 2000 ? "" : d.toLocaleTimeString();
}
function fmtNum(v) {
  if (typeof v !== "number") return typeof v === "string" ? v : JSON.stringify(v);
  return Number.isInteger(v) ? String(v) : Number(v.toPrecision(4)).toString();
}
function badge(text, cls) { return h("span", { class: "badge " + (cls || text) }, text); }

function table(heads, rows, opts) {
  opts = opts || {};
  return h("table", opts.attrs,
    h("thead", null, h("tr", null, heads.map(([t, c]) => h("th", { class: c }, t)))),
    h("tbody", null, rows));
}

function renderServers(v) {
  if (!v.servers || v.servers.length === 0) return fill("servers", h("p", { class: "empty" }, "no raft configuration known"));
  const rows = v.servers.map((s) => h("tr", null,
    h("td", null, s.id, s.id === v.coordinator ? h("span", { class: "dim" }, " (this)") : ""),
    h("td", null, s.leader ? badge("leader") : s.id === v.coordinator ? badge(v.role) : v.cluster_error ? badge("unknown") : badge("follower")),
    h("td", { class: "path" }, s.raft_addr)));
  fill("servers", table([["id"], ["role"], ["raft"]], rows));
}

function renderWorkers(v) {
  if (v.workers.length === 0) return fill("workers", h("p", { class: "empty" }, "no workers registered"));
  const known = !v.cluster_error;
  const rows = v.workers.map((w) => {
    let health = !known ? badge("unknown") : w.alive ? badge("alive") : badge("lost");
    if (w.excluded_until) health = badge("cool-down", "cooldown");
    return h("tr", { "data-worker": w.id },
      h("td", null, w.id),
      h("td", null, w.device),
      h("td", null, health),
      h("td", null, w.job ? w.job + (w.rank >= 0 ? " #" + w.rank : "") : w.state || "idle"),
      h("td", { class: "num" }, w.step || ""));
  });
  fill("workers", table([["id"], ["device"], ["health"], ["job #rank"], ["step", "num"]], rows));
}

function renderJobs(v) {
  if (v.jobs.length === 0) return fill("jobs", h("p", { class: "empty" }, "no jobs yet: herd submit CONFIG"));
  const cur = v.selected ? v.selected.id : "";
  const rows = v.jobs.slice().reverse().map((j) => {
    // A scoring job's progress is its rows.
    const [done, total] = j.kind === "score" && j.score ? [j.score.rows_done, j.score.rows_total] : [j.step, j.total_steps];
    const pct = total > 0 ? Math.min(100, (100 * done) / total) : 0;
    return h("tr", { class: j.id === cur ? "sel" : "", "data-job": j.id, "data-status": j.status,
      onclick: () => { selected = j.id; history.replaceState(null, "", "?job=" + encodeURIComponent(j.id)); refresh(); } },
      h("td", null, j.id),
      h("td", null, j.name),
      h("td", null, badge(j.status)),
      h("td", null, h("span", { class: "bar" }, h("i", { style: "width:" + pct.toFixed(1) + "%" })), done + "/" + total + (j.kind === "score" ? " rows" : "")),
      h("td", { class: "num" }, j.step > 0 ? fmtLoss(j.loss) : "–"),
      h("td", { class: "num" }, fmtRate(j.tokens_per_sec)),
      h("td", { class: "num" }, (j.members || []).length));
  });
  fill("jobs", table([["job"], ["name"], ["status"], ["progress"], ["loss", "num"], ["tok/s", "num"], ["world", "num"]], rows));
}

// niceStep returns a round tick spacing (1, 2 or 5 × 10^k) for about n
// ticks over span.
function niceStep(span, n) {
  const raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / mag;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

// chart draws series of [x, y] points ({name, label, points, color}) as an
// SVG line chart on shared axes; sparse series (evaluations) get a marker
// at every point. Each polyline carries data-series and data-points, which
// the end-to-end tests read. Hovering shows the first series' nearest
// point.
function chart(name, title, series, fmt, W) {
  const H = 220, L = 58, R = 14, T = 10, B = 26;
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, "data-chart": name });
  const shown = series.filter((s) => s.points.length > 0);
  const legend = shown.length > 1 ? shown.map((s) => h("span", { class: "key", style: "color:" + s.color }, "— " + s.label)) : [];
  const box = h("div", { class: "chart" }, h("h4", null, title, legend), svg);
  if (shown.length === 0) {
    svg.append(h("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, "no steps yet"));
    return box;
  }
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of shown) {
    for (const [x, y] of s.points) {
      x0 = Math.min(x0, x); x1 = Math.max(x1, x);
      y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  }
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
  const pad = (y1 - y0) * 0.06; y0 -= pad; y1 += pad;
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const ys = niceStep(y1 - y0, 4);
  // Tick labels show as many decimals as the tick spacing needs.
  const digits = Math.max(0, -Math.floor(Math.log10(ys)));
  for (let y = Math.ceil(y0 / ys) * ys; y <= y1; y += ys) {
    svg.append(h("svg:line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: "grid" }));
    svg.append(h("svg:text", { x: L - 6, y: sy(y) + 4, "text-anchor": "end", class: "axis" }, y >= 1e4 ? fmtRate(y) : y.toFixed(digits)));
  }
  const xs = Math.max(1, niceStep(x1 - x0, W / 110));
  for (let x = Math.ceil(x0 / xs) * xs; x <= x1; x += xs) {
    svg.append(h("svg:text", { x: sx(x), y: H - 8, "text-anchor": "middle", class: "axis" }, String(Math.round(x))));
  }
  for (const s of shown) {
    const pts = s.points.map(([x, y]) => sx(x).toFixed(1) + "," + sy(y).toFixed(1)).join(" ");
    svg.append(h("svg:polyline", { points: pts, class: "curve", stroke: s.color, "data-series": s.name, "data-points": s.points.length }));
    const marks = s.points.length <= 60 && s !== shown[0] ? s.points : [s.points[s.points.length - 1]];
    for (const [x, y] of marks) svg.append(h("svg:circle", { cx: sx(x), cy: sy(y), r: 3.5, fill: s.color }));
  }
  const points = shown[0].points;
  const guide = h("svg:line", { y1: T, y2: H - B, class: "hover", visibility: "hidden" });
  const tip = h("svg:text", { y: T + 12, class: "tip", visibility: "hidden" });
  svg.append(guide, tip);
  svg.addEventListener("mousemove", (ev) => {
    const r = svg.getBoundingClientRect();
    const x = x0 + (((ev.clientX - r.left) * (W / r.width) - L) / (W - L - R)) * (x1 - x0);
    let best = points[0];
    for (const p of points) if (Math.abs(p[0] - x) < Math.abs(best[0] - x)) best = p;
    const px = sx(best[0]);
    guide.setAttribute("x1", px); guide.setAttribute("x2", px); guide.setAttribute("visibility", "visible");
    tip.textContent = "step " + best[0] + ": " + fmt(best[1]);
    tip.setAttribute("x", px > W / 2 ? px - 6 : px + 6);
    tip.setAttribute("text-anchor", px > W / 2 ? "end" : "start");
    tip.setAttribute("visibility", "visible");
  });
  svg.addEventListener("mouseleave", () => { guide.setAttribute("visibility", "hidden"); tip.setAttribute("visibility", "hidden"); });
  return box;
}

function flatten(prefix, obj, out) {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? prefix + "." + k : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(key, v, out);
    else out.push([key, v]);
  }
  return out;
}

function tile(k, v, name) { return h("div", { class: "tile", "data-tile": name }, h("div", { class: "k" }, k), h("div", { class: "v" }, v)); }

function renderJob(v) {
  const j = v.selected;
  const sec = document.getElementById("job");
  if (!j) return sec.replaceChildren(h("h2", null, "Job"), h("p", { class: "empty" }, "no job to show"));
  // A scoring job has no training steps: its tiles are its scoring
  // phase's; a training job that scores after its last step shows both.
  const training = j.kind !== "score";
  const tiles = [];
  if (training) {
    const pct = j.total_steps > 0 ? " · " + Math.floor((100 * j.step) / j.total_steps) + "%" : "";
    tiles.push(
      tile("step" + pct, j.step + "/" + j.total_steps, "step"),
      tile("loss", j.step > 0 ? fmtLoss(j.loss) : "–", "loss"),
      tile("tokens/s", fmtRate(j.tokens_per_sec), "tokens_per_sec"),
      tile("ETA", j.eta_s === undefined ? "–" : fmtDur(j.eta_s), "eta"));
    if (j.last_eval) tiles.push(tile("eval loss · step " + j.last_eval.step, fmtLoss(j.last_eval.eval_loss), "eval"));
    if (j.allreduce_share !== undefined) tiles.push(tile("all-reduce share", (100 * j.allreduce_share).toFixed(0) + "%", "allreduce"));
  }
  const sc = j.score;
  if (sc) {
    const pct = sc.rows_total > 0 ? " · " + Math.floor((100 * sc.rows_done) / sc.rows_total) + "%" : "";
    tiles.push(
      tile("scored rows" + pct, sc.rows_done + "/" + sc.rows_total, "score_rows"),
      tile("batches", sc.batches_done + "/" + sc.batches_total, "score_batches"),
      tile("scoring", sc.phase, "score_phase"));
    // The rate and ETA come from the leader while it scores.
    if (sc.rows_per_sec > 0) tiles.push(tile("rows/s", sc.rows_per_sec.toFixed(1), "score_rate"), tile("scoring ETA", fmtDur(sc.eta_s), "score_eta"));
  }
  tiles.push(
    tile("world", (j.members || []).length, "world"),
    tile("group epoch", j.epoch, "epoch"));
  if (training) tiles.push(tile("data epoch", j.data_epoch, "data_epoch"));
  tiles.push(tile("restarts", j.restarts, "restarts"));
  const cps = j.checkpoints || [];
  const cpBox = h("div", null, h("h4", null, "Checkpoints (" + cps.length + ")"),
    cps.length === 0 ? h("p", { class: "empty" }, "none yet") :
      table([["step", "num"], ["time"], ["path"]], cps.slice(-6).reverse().map((c) =>
        h("tr", null, h("td", { class: "num" }, c.step), h("td", null, fmtTime(c.time)), h("td", { class: "path" }, c.path)))));
  const side = [cpBox];
  if (j.metrics) {
    side.push(h("div", null, h("h4", null, sc && sc.phase !== "done" ? "Metrics (partial)" : "Metrics"), table([["metric"], ["value", "num"]],
      flatten("", j.metrics, []).sort((a, b) => a[0].localeCompare(b[0])).map(([k, val]) =>
        h("tr", { "data-metric": k }, h("td", null, k), h("td", { class: "num" }, fmtNum(val)))))));
  }
  if (j.adapter) side.push(h("div", null, h("h4", null, "Adapter"), h("p", { class: "path" }, j.adapter)));
  const events = h("div", null, h("h4", null, "Events"),
    j.events.length === 0 ? h("p", { class: "empty" }, "none") :
      h("ul", { class: "events" }, j.events.slice().reverse().map((e) => h("li", null, h("time", null, fmtTime(e.time)), e.message))));
  sec.replaceChildren(
    h("div", { class: "jobhead" }, h("h3", null, j.id), h("span", { class: "dim" }, j.name), badge(j.status),
      h("span", { class: "dim" }, (j.members || []).join(" "))),
    j.error ? h("p", { class: "error" }, j.error) : "",
    h("div", { class: "tiles" }, tiles),
    !training ? "" : h("div", { class: "charts" },
      chart("loss", "Loss", [
        { name: "loss", label: "train", points: j.loss_series, color: "#2f6fdf" },
        { name: "eval", label: "eval", points: j.eval_series, color: "#e0662b" },
      ], fmtLoss, 640),
      chart("tokens_per_sec", "Tokens/s", [{ name: "tokens_per_sec", points: j.tokens_per_sec_series, color: "#1f9d55" }], fmtRate, 320)),
    h("div", { class: "cols" }, h("div", null, side), events));
}

function setConn(state, text) {
  const el = document.getElementById("conn");
  el.dataset.state = state;
  el.textContent = text;
}

function render(v) {
  const role = v.role + (v.leader && v.role !== "leader" ? ", leader " + v.leader : "");
  setConn(v.cluster_error ? "warn" : "ok", "coordinator " + v.coordinator + " (" + role + ") · updated " + fmtTime(v.time));
  const banner = document.getElementById("banner");
  banner.hidden = !v.cluster_error;
  banner.textContent = v.cluster_error ? "No leader answered; worker liveness is unknown: " + v.cluster_error : "";
  renderServers(v);
  renderWorkers(v);
  renderJobs(v);
  renderJob(v);
  document.body.dataset.loaded = "true";
}

// refresh fetches the state and renders it, then schedules the next poll.
// A click starts a refresh at once; gen makes a poll that was already in
// flight drop its answer, so that one chain of polls remains.
let gen = 0;
async function refresh() {
  clearTimeout(timer);
  const mine = ++gen;
  let v, err;
  try {
    const r = await fetch("api/state" + (selected ? "?job=" + encodeURIComponent(selected) : ""), { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    v = await r.json();
  } catch (e) {
    err = e;
  }
  if (mine !== gen) return;
  if (err) setConn("down", "coordinator unreachable (" + err.message + "); retrying");
  else render(v);
  timer = setTimeout(refresh, POLL_MS);
}

refresh();
