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
    const tagged = (video.tags || []).map((t) => t[0]).join("\n");
    addCard(card, video.path + "\n" + video.labels.map((l) => l[0]).join("\n") + "\n" + tagged, status, video.labels.length ? video.labels[0][0] : "");
  }
  chipRow([...tops.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30));
}
// A chip per [label, count]: a click filters on the top label (=label).
function chipRow(counts) {
  const chips = document.getElementById("chips");
  for (const [label, count] of counts) {
    const chip = el("button", "chip", label + " (" + count + ")");
    chip.type = "button";
    chip.addEventListener("click", () => { document.getElementById("filter").value = "=" + label; apply(); });
    chips.append(chip);
  }
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
    addCard(card, segment.labels.map((l) => l[0]).join("\n"), "ok", segment.label);
  }
}

// A search's moments: a heading per query, then its moments best first, each with the frames of
// its best window and a link that opens the video there (#t=start,end, made by the writer).
function momentsPage() {
  breakable(document.getElementById("title"), data.title);
  document.getElementById("status").hidden = true;  // every moment was scored: nothing to pick
  document.getElementById("filter").placeholder = "Filter by query or path (=query: that query only)";
  const total = data.queries.reduce((sum, group) => sum + group.moments.length, 0);
  const found = total + " moment" + (total === 1 ? "" : "s") + " for " + data.queries.length + (data.queries.length === 1 ? " query" : " queries");
  document.getElementById("meta").textContent = [found, data.windows && "windows of " + data.windows, data.model].filter((x) => x).join(" · ");
  data.queries.forEach((group, number) => {
    const head = el("div", "group");
    head.dataset.group = String(number);
    head.append(el("h2", "query", group.query));
    const count = group.moments.length;
    head.append(el("span", "meta", count ? count + " moment" + (count === 1 ? "" : "s") : "no moments"));
    cards.append(head);
    group.moments.forEach((moment, rank) => {
      const card = el("article", "card" + (moment.problem ? " error" : ""));
      card.dataset.group = String(number);
      card.append(breakable(el("h2"), moment.path));
      const merged = moment.windows + " window" + (moment.windows === 1 ? "" : "s");
      const best = moment.windows > 1 ? " (best " + clock(moment.best[0]) + " - " + clock(moment.best[1]) + ")" : "";
      card.append(el("div", "meta", "#" + (rank + 1) + " · " + clock(moment.start) + " - " + clock(moment.end) +
        " · score " + moment.score.toFixed(2) + " · " + merged + best));
      if (moment.thumbs.length) card.append(strip(moment.thumbs, moment.path));
      if (moment.problem) card.append(el("p", "problem", moment.problem));
      if (/^(file:\/\/\/|\.\/)/.test(moment.href)) {  // the writer's links only: a file here, never a script
        const link = el("a", "play", "open at " + clock(moment.start));
        link.setAttribute("href", moment.href);
        link.target = "_blank"; link.rel = "noopener";
        card.append(link);
      }
      addCard(card, group.query + "\n" + moment.path, moment.problem ? "error" : "ok", group.query);
    });
  });
  chipRow(data.queries.map((group) => [group.query, group.moments.length]));
}

function apply() {
  const query = document.getElementById("filter").value.trim().toLowerCase();
  const status = document.getElementById("status").value;
  const all = cards.querySelectorAll(":scope > article"), groups = new Set();
  let shown = 0;
  for (const card of all) {
    const matches = !query || (query.startsWith("=") ? card.dataset.top === query.slice(1) : card.dataset.text.includes(query));
    const visible = matches && (status === "all" || card.dataset.status.split(" ").includes(status));
    card.hidden = !visible;
    shown += visible;
    if (visible) groups.add(card.dataset.group);
  }
  // A query's heading stays while any of its moments shows (or, unfiltered, when it found none).
  for (const head of cards.querySelectorAll(":scope > .group")) head.hidden = query !== "" && !groups.has(head.dataset.group);
  document.getElementById("count").textContent = "showing " + shown + " of " + all.length;
}

if (data.kind === "timeline") timelinePage(); else if (data.kind === "moments") momentsPage(); else scanPage();
document.getElementById("filter").value = params.get("q") || "";
document.getElementById("filter").addEventListener("input", apply);
document.getElementById("status").addEventListener("change", apply);
apply();
document.body.dataset.ready = "1";
