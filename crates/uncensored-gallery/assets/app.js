// The gallery page. Every piece of data goes into the DOM as text
// (textContent, attributes set as properties): never as HTML.
"use strict";

const PAGE = 120;
const $ = (id) => document.getElementById(id);
const grid = $("grid");
const state = { loaded: 0, total: 0, stored: 0, loading: false, done: false, generation: 0, unseen: 0 };

function imagePath(name) {
  return name.split("/").map(encodeURIComponent).join("/");
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function query() {
  const params = new URLSearchParams();
  for (const id of ["q", "model", "from", "to", "batch", "sort"]) {
    const value = $(id).value.trim();
    if (value) params.set(id, value);
  }
  return params;
}

function seconds(value) {
  return typeof value === "number" ? value.toFixed(1) + " s" : "?";
}

function when(text) {
  const date = new Date(text);
  return isNaN(date) ? String(text) : date.toLocaleString();
}

function card(record) {
  const item = el("li", "card");
  item.dataset.name = record.name;
  item.tabIndex = 0;
  const img = document.createElement("img");
  img.loading = "lazy";
  img.decoding = "async";
  img.alt = record.prompt;
  img.width = 256;
  img.height = 256;
  img.src = "/thumbs/" + imagePath(record.name);
  item.append(img, el("p", "prompt", record.prompt));
  const size = record.width && record.height ? record.width + "×" + record.height : "";
  const facts = [record.model || "unknown model", size, when(record.created_at), seconds(record.generation_time)];
  item.append(el("p", "facts", facts.filter(Boolean).join(" · ")));
  item.addEventListener("click", () => openDetail(record.name));
  item.addEventListener("keydown", (event) => {
    if (event.key === "Enter") openDetail(record.name);
  });
  return item;
}

function summary() {
  const shown = state.total === state.stored ? state.total + " images" : state.total + " of " + state.stored + " images";
  $("summary").textContent = shown + (state.unseen ? " · " + state.unseen + " new" : "");
}

function setModels(models) {
  const select = $("model");
  const known = new Set(Array.from(select.options, (o) => o.value));
  for (const model of models) {
    if (!known.has(model)) select.append(new Option(model, model));
  }
}

async function loadMore() {
  if (state.loading || state.done) return;
  state.loading = true;
  const generation = state.generation;
  try {
    const params = query();
    params.set("offset", String(state.loaded));
    params.set("limit", String(PAGE));
    const response = await fetch("/api/images?" + params);
    if (!response.ok) throw new Error(response.status + " " + (await response.text()));
    const page = await response.json();
    if (generation !== state.generation) return;
    const fragment = document.createDocumentFragment();
    for (const record of page.items) fragment.append(card(record));
    grid.append(fragment);
    state.loaded += page.items.length;
    state.total = page.total;
    state.stored = page.stored;
    state.done = state.loaded >= page.total || page.items.length === 0;
    setModels(page.models);
    summary();
  } catch (error) {
    $("summary").textContent = "Cannot load images: " + error.message;
  } finally {
    state.loading = false;
  }
  // Still on screen after this page (a tall window): load the next one.
  if (!state.done && visible($("more"))) loadMore();
}

function visible(node) {
  const box = node.getBoundingClientRect();
  return box.top < window.innerHeight + 600;
}

function reset() {
  state.generation += 1;
  state.loaded = 0;
  state.done = false;
  state.loading = false;
  state.unseen = 0;
  $("new-images").hidden = true;
  grid.replaceChildren();
  loadMore();
}

function matches(record) {
  const params = query();
  if (params.has("batch")) return false;
  const words = (params.get("q") || "").toLowerCase().split(/\s+/).filter(Boolean);
  const prompt = record.prompt.toLowerCase();
  if (!words.every((w) => prompt.includes(w))) return false;
  if (params.has("model") && record.model !== params.get("model")) return false;
  const day = String(record.created_at).slice(0, 10);
  if (params.has("from") && day < params.get("from")) return false;
  if (params.has("to") && day > params.get("to")) return false;
  return true;
}

function arrived(record) {
  state.stored += 1;
  setModels(record.model ? [record.model] : []);
  const sort = $("sort").value;
  if (matches(record) && sort === "date") {
    grid.prepend(card(record));
    state.loaded += 1;
    state.total += 1;
  } else {
    state.unseen += 1;
    const button = $("new-images");
    button.textContent = state.unseen + " new image(s): show";
    button.hidden = false;
  }
  summary();
}

async function openDetail(name) {
  const response = await fetch("/api/image/" + imagePath(name));
  if (!response.ok) return;
  const record = await response.json();
  $("detail-image").src = "/images/" + imagePath(record.name);
  $("detail-image").alt = record.prompt;
  const fields = [
    ["Prompt", record.prompt],
    ["Model", record.model || "unknown"],
    ["Size", (record.width || "?") + " × " + (record.height || "?") + " px, " + record.size + " bytes"],
    ["Created", when(record.created_at)],
    ["Generation time", seconds(record.generation_time)],
    ["Job", record.job_id],
    ["SHA-256", record.sha256],
    ["Name", record.name],
    ["Location", record.location],
  ];
  const list = $("detail-fields");
  list.replaceChildren();
  for (const [label, value] of fields) list.append(el("dt", "", label), el("dd", "", value));
  $("detail").showModal();
}

function renderBatch(view) {
  if (!view.journal) return;
  $("batch-panel").hidden = false;
  if (view.name) $("batch").options[1].textContent = "Images of batch " + view.name;
  $("batch-counts").textContent = (view.name ? "Batch " + view.name + ": " : "") +
    view.lines + " lines recorded: " + view.stored + " stored, " + view.failed.length + " failed, " + view.in_flight.length + " in flight";
  $("failed-count").textContent = String(view.failed.length);
  $("in-flight-count").textContent = String(view.in_flight.length);
  if (view.failed.length) $("failures-box").open = true;
  const failures = view.failed.map((line) => {
    const item = el("li", "failure");
    item.append(
      el("span", "prompt", line.prompt),
      document.createTextNode(" "),
      el("span", "reason", line.reason),
      el("span", "advice", line.advice),
      el("span", "message", line.message),
    );
    return item;
  });
  $("failures").replaceChildren(...failures);
  const flights = view.in_flight.map((line) => {
    const item = el("li", "flight");
    item.append(el("span", "prompt", line.prompt), el("span", "stage", line.stage + " since " + when(line.updated_at)));
    return item;
  });
  $("in-flight").replaceChildren(...flights);
}

function listen() {
  const events = new EventSource("/api/events");
  events.addEventListener("image", (event) => arrived(JSON.parse(event.data)));
  events.addEventListener("batch", (event) => renderBatch(JSON.parse(event.data)));
  events.addEventListener("reload", () => reset());
}

function start() {
  // A remote gallery's token comes once in the URL; the cookie its answer set keeps it.
  if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);
  let typing;
  $("q").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(reset, 200);
  });
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    reset();
  });
  for (const id of ["model", "from", "to", "batch", "sort"]) $(id).addEventListener("change", reset);
  $("new-images").addEventListener("click", reset);
  $("close").addEventListener("click", () => $("detail").close());
  new IntersectionObserver((seen) => {
    if (seen.some((entry) => entry.isIntersecting)) loadMore();
  }, { rootMargin: "600px" }).observe($("more"));
  fetch("/api/batch").then((r) => r.json()).then(renderBatch).catch(() => {});
  listen();
  loadMore();
}

start();
