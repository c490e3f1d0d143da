"""The HTML report's page: styles and script, with the data (``__DATA__``) and title filled in."""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>__TITLE__</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f6f4; color: #222; }
  header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ddd; padding: 10px 16px; z-index: 2; }
  /* Names break after / _ - . first (<wbr> there); inside a part only when it cannot fit. */
  h1 { font-size: 17px; margin: 0 0 6px; overflow-wrap: break-word; }
  .controls { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
  .controls input { flex: 1; min-width: 0; flex-basis: 200px; padding: 5px 8px; }
  .meta, .count { color: #666; font-size: 12px; }
  .chips { margin-top: 6px; display: flex; gap: 4px; flex-wrap: wrap; }
  .chip { border: 1px solid #ccc; border-radius: 10px; padding: 1px 8px; font-size: 12px; cursor: pointer; background: #fafafa; }
  /* Cards of 420 px or more side by side; one card as wide as the screen on a phone. */
  main { padding: 12px 16px; display: grid; grid-template-columns: repeat(auto-fill, minmax(min(420px, 100%), 1fr)); gap: 12px; }
  .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px; min-height: 120px; min-width: 0; }
  .card.error { border-color: #d66; }
  .card h2 { font-size: 13px; margin: 0 0 4px; overflow-wrap: break-word; font-weight: 600; }
  /* Every frame in one row that fits the card: a column each, at most the thumbnail's 96 px. */
  .strip { display: grid; grid-template-columns: repeat(var(--frames, 8), minmax(0, 96px)); gap: 2px; margin: 6px 0; }
  .strip img { width: 100%; height: auto; border-radius: 2px; background: #eee; display: block; }
  ol.labels { list-style: none; padding: 0; margin: 4px 0 0; }
  ol.labels li { display: grid; grid-template-columns: minmax(0, 1fr) minmax(24px, 120px) max-content; gap: 6px;
                 align-items: center; font-size: 12px; }
  ol.labels .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .bar { height: 8px; background: #e4e4e4; border-radius: 4px; overflow: hidden; }
  .bar > span { display: block; height: 100%; background: #4a7fd0; }
  .p { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; min-width: 6ch; }
  .warning { color: #8a5a00; font-size: 12px; margin: 2px 0; }
  .tags { font-size: 12px; margin: 4px 0 0; color: #235; }
  .problem { color: #b00; font-size: 12px; margin: 2px 0; }
  .axis { position: relative; height: 34px; background: #eee; border-radius: 4px; margin: 8px 16px 0; }
  .axis .block { position: absolute; top: 0; bottom: 0; overflow: hidden; font-size: 11px; color: #fff; padding: 2px 3px;
                 white-space: nowrap; border-right: 1px solid #fff; box-sizing: border-box; text-shadow: 0 0 2px rgba(0, 0, 0, 0.6); }
  .ticks { position: relative; height: 16px; margin: 0 16px; font-size: 11px; color: #666; }
  .ticks span { position: absolute; transform: translateX(-50%); }
  @media (max-width: 600px) {  /* a phone: label names before bars, 6 times on the axis, not 11 */
    ol.labels li { grid-template-columns: minmax(0, 1fr) minmax(24px, 64px) max-content; }
    .ticks span:nth-child(even) { display: none; }
  }
  [hidden] { display: none !important; }
</style>
</head>
<body data-errors="0">
<header>
  <h1 id="title"></h1>
  <div class="meta" id="meta"></div>
  <div class="controls">
    <input id="filter" type="search" placeholder="Filter by label or path (=label: top label only)" aria-label="Filter by label or path">
    <select id="status" aria-label="Status">
      <option value="all">all</option><option value="ok">classified</option>
      <option value="error">failed</option><option value="warnings">with warnings</option>
    </select>
    <span class="count" id="count"></span>
  </div>
  <div class="chips" id="chips"></div>
</header>
<div id="timeline"></div>
<main id="cards"></main>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
window.addEventListener("error", () => { document.body.dataset.errors = String(Number(document.body.dataset.errors) + 1); });
const data = JSON.parse(document.getElementById("data").textContent);
document.getElementById("data").textContent = "";  // parsed: the page's text need not be held twice
// The address's fragment: #all loads every image at once (printing); q=TEXT presets the filter.
const params = new URLSearchParams(location.hash.slice(1));
const eager = params.has("all");
const cards = document.getElementById("cards");

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
function percent(p) { return (100 * p).toFixed(1) + "%"; }
function clock(seconds) {
  const s = Math.round(Math.max(0, seconds) * 10) / 10, h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = (s % 60).toFixed(1);
  const mm = String(m).padStart(h ? 2 : 1, "0"), ss = rest.padStart(4, "0");
  return h ? h + ":" + mm + ":" + ss : mm + ":" + ss;
}
// matplotlib's tab10, given to labels in order of first appearance as `--plot` does: neighbouring
// segments (different labels) never share a colour; past 10 labels, hues a golden angle apart.
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
function labelColours(labels) {
  const colours = new Map();
  for (const label of labels) {
    const k = colours.size;
    if (!colours.has(label)) colours.set(label, k < PALETTE.length ? PALETTE[k] : "hsl(" + Math.round(k * 137.508) % 360 + ", 60%, 38%)");
  }
  return colours;
}
// A name as text that may wrap after / _ - . and spaces (a <wbr> after each), never as markup.
function breakable(node, text) {
  node.textContent = "";
  for (const part of String(text).split(/(?<=[/_.-])/)) {
    if (node.firstChild) node.append(document.createElement("wbr"));
    node.append(part);
  }
  return node;
}
function labelList(labels) {
  const list = el("ol", "labels");
  for (const [label, probability] of labels) {
    const item = el("li");
    item.append(el("span", "name", label));
    const bar = el("span", "bar"), fill = el("span");
    fill.style.width = Math.max(0, Math.min(100, 100 * probability)) + "%";
    bar.append(fill);
    item.append(bar, el("span", "p", percent(probability)));
    item.firstChild.title = label;
    list.append(item);
  }
  return list;
}
// Images wait in this map, not in the DOM, until their card comes near the viewport.
const pending = new WeakMap();
function tagLine(tags) {
  if (tags === null || tags === undefined) return null;
  const text = tags.length ? tags.map(([label, score]) => label + " " + score.toFixed(2)).join(", ") : "none";
  return el("p", "tags", "tags: " + text);
}
function strip(thumbs, alt) {
  const row = el("div", "strip");
  row.style.setProperty("--frames", String(thumbs.length));
  thumbs.forEach((jpeg, i) => {
    const img = el("img");
    img.alt = alt + " frame " + (i + 1);
    img.width = 96; img.height = 96;  // a square until it loads (the model's crop usually is)
    pending.set(img, jpeg);
    img.addEventListener("load", () => { img.dataset.loaded = img.naturalWidth > 0 ? "1" : "0"; });
    img.addEventListener("error", () => { img.dataset.loaded = "0"; document.body.dataset.errors = String(Number(document.body.dataset.errors) + 1); });
    row.append(img);
  });
  return row;
}
function load(card) {
  for (const img of card.querySelectorAll("img")) {
    const jpeg = pending.get(img);
    if (jpeg !== undefined) { img.src = "data:image/jpeg;base64," + jpeg; pending.delete(img); }
  }
}
const observer = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
      for (const entry of entries) if (entry.isIntersecting) { load(entry.target); observer.unobserve(entry.target); }
    }, { rootMargin: "600px" })
  : null;

function addCard(card, text, status, top) {
  card.dataset.text = text.toLowerCase();
  card.dataset.top = (top || "").toLowerCase();
  card.dataset.status = status;
  cards.append(card);
  if (eager || !observer) load(card); else observer.observe(card);
}

function scanPage() {
  breakable(document.getElementById("title"), data.title);
  const failed = data.videos.filter((v) => v.status !== "ok").length;
  const warned = data.videos.filter((v) => v.warnings.length).length;
  document.getElementById("meta").textContent = data.videos.length + " videos, " + failed + " failed, " + warned +
    " with warnings · " + data.models.join(", ") + " · " + data.labelsets.join(", ");
  const tops = new Map();
  for (const video of data.videos) {
    const card = el("article", "card" + (video.status === "ok" ? "" : " error"));
    card.append(breakable(el("h2"), video.path));
    const facts = [video.duration != null ? video.duration.toFixed(1) + " s" : null, video.size, video.status];
    card.append(el("div", "meta", facts.filter((x) => x).join(" · ")));
    if (video.thumbs.length) card.append(strip(video.thumbs, video.path));
    if (video.error) card.append(el("p", "problem", video.error));
    for (const warning of video.warnings) card.append(el("p", "warning", warning));
    if (video.labels.length) card.append(labelList(video.labels));
    const videoTags = tagLine(video.tags);
    if (videoTags) card.append(videoTags);
    if (video.labels.length) tops.set(video.labels[0][0], (tops.get(video.labels[0][0]) || 0) + 1);
    const status = video.status !== "ok" ? "error" : video.warnings.length ? "ok warnings" : "ok";
    const tagged = (video.tags || []).map((t) => t[0]).join("\\n");
    addCard(card, video.path + "\\n" + video.labels.map((l) => l[0]).join("\\n") + "\\n" + tagged, status, video.labels.length ? video.labels[0][0] : "");
  }
  const chips = document.getElementById("chips");
  [...tops.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30).forEach(([label, count]) => {
    const chip = el("button", "chip", label + " (" + count + ")");
    chip.type = "button";
    chip.addEventListener("click", () => { document.getElementById("filter").value = "=" + label; apply(); });
    chips.append(chip);
  });
}

function timelinePage() {
  breakable(document.getElementById("title"), data.title);
  document.getElementById("status").hidden = true;  // every segment is classified: nothing to pick
  const windows = data.shots !== null ? data.shots + " shots, windows up to " + data.window + " s"
    : "windows of " + data.window + " s every " + data.stride + " s";
  document.getElementById("meta").textContent = clock(data.duration) + " · " + data.segments.length + " segments" +
    (data.merged ? " (merged)" : " (windows)") + " · " + windows + " · " + data.model + " · " + data.labelset;
  const axis = el("div", "axis"), ticks = el("div", "ticks"), span = data.duration || 1;
  const colours = labelColours(data.segments.map((segment) => segment.label));
  for (const segment of data.segments) {
    const block = el("div", "block", segment.label);
    block.style.left = (100 * segment.start / span) + "%";
    block.style.width = Math.max(0.2, 100 * (segment.end - segment.start) / span) + "%";
    block.style.background = colours.get(segment.label);
    block.title = clock(segment.start) + "-" + clock(segment.end) + " " + segment.label + " " + percent(segment.probability);
    axis.append(block);
  }
  for (let i = 0; i <= 10; i++) {
    const tick = el("span", "", clock(span * i / 10));
    tick.style.left = (10 * i) + "%";
    if (i === 0) tick.style.transform = "none"; else if (i === 10) tick.style.transform = "translateX(-100%)";
    ticks.append(tick);
  }
  const holder = document.getElementById("timeline");
  holder.append(axis, ticks);
  for (const warning of data.warnings) holder.append(el("p", "warning", warning));
  for (const segment of data.segments) {
    const card = el("article", "card");
    card.append(el("h2", "", clock(segment.start) + " - " + clock(segment.end) + "  " + segment.label));
    card.append(el("div", "meta", segment.windows + " window" + (segment.windows === 1 ? "" : "s")));
    if (segment.thumbs.length) card.append(strip(segment.thumbs, segment.label));
    card.append(labelList(segment.labels));
    const segmentTags = tagLine(segment.tags);
    if (segmentTags) card.append(segmentTags);
    addCard(card, segment.labels.map((l) => l[0]).join("\\n"), "ok", segment.label);
  }
}

function apply() {
  const query = document.getElementById("filter").value.trim().toLowerCase();
  const status = document.getElementById("status").value;
  let shown = 0;
  for (const card of cards.children) {
    const matches = !query || (query.startsWith("=") ? card.dataset.top === query.slice(1) : card.dataset.text.includes(query));
    const visible = matches && (status === "all" || card.dataset.status.split(" ").includes(status));
    card.hidden = !visible;
    shown += visible;
  }
  document.getElementById("count").textContent = "showing " + shown + " of " + cards.children.length;
}

if (data.kind === "timeline") timelinePage(); else scanPage();
document.getElementById("filter").value = params.get("q") || "";
document.getElementById("filter").addEventListener("input", apply);
document.getElementById("status").addEventListener("change", apply);
apply();
document.body.dataset.ready = "1";
</script>
</body>
</html>
"""
