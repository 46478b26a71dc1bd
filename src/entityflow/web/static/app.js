// The entityflow dashboard: four views over the public JSON API (/v1), state in the query
// string, CSV of whatever is on screen. Plain JS, no build step, nothing loaded from elsewhere.
"use strict";

const LABELS = [
  ["PERSON", "People"],
  ["ORG", "Organisations"],
  ["GPE", "Countries, cities, states"],
  ["NORP", "Nationalities, religious and political groups"],
  ["LOC", "Other places"],
  ["FAC", "Buildings, airports, roads"],
  ["EVENT", "Events"],
  ["PRODUCT", "Products"],
  ["WORK_OF_ART", "Works of art"],
  ["LAW", "Laws"],
  ["LANGUAGE", "Languages"],
];
const SHORT = {
  PERSON: "Person", ORG: "Organisation", GPE: "Place", NORP: "Group", LOC: "Location",
  FAC: "Facility", EVENT: "Event", PRODUCT: "Product", WORK_OF_ART: "Work of art",
  LAW: "Law", LANGUAGE: "Language",
};
const KNOWN_LABELS = new Set(LABELS.map(([code]) => code));
const VIEWS = ["overview", "publication", "compare", "entity"];
const TITLES = {
  overview: "Overview", publication: "Publication", compare: "Compare", entity: "Entity",
};
const KEY_STORE = "entityflow.apiKey";
// The API's largest page (the server writes it into the page): Compare reads this many
// entities per publication.
const MAX_LIMIT = Number(document.body.dataset.maxRows);
const OVERVIEW_LIMIT = 20;

const number = new Intl.NumberFormat();
const percent = new Intl.NumberFormat(undefined, {
  style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1,
});
const points = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 1, maximumFractionDigits: 1,
});
const longDate = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" });

// ---------------------------------------------------------------- small helpers

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    // Through the CSSOM: the page's CSP allows no inline style attributes.
    else if (name === "style") node.style.cssText = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

const isDate = (value) => /^\d{4}-\d{2}-\d{2}$/.test(value || "");
const formatDate = (iso) => longDate.format(new Date(iso + "T00:00:00Z"));
const dateNode = (iso) => (iso ? h("time", { datetime: iso }, formatDate(iso)) : "—");
const numberNode = (value, cls) => h("data", { value, class: cls }, number.format(value));
const percentNode = (share) => h("data", { value: (share * 100).toFixed(1), class: "share" },
  percent.format(share));
const pct = (share) => (share * 100).toFixed(1);
const entityId = (e) => `${e.label}|${e.key}`;
const labelName = (code) => SHORT[code] || code;

function say(message) {
  document.getElementById("status").textContent = message;
}

/** The key the service gives an entity's text (DESIGN.md's counting rule, near enough). */
function entityKey(text) {
  let key = text.normalize("NFKC").replace(/\s+/g, " ").trim();
  key = key.replace(/^the /i, "").replace(/['’]s$/, "");
  return key.toLowerCase();
}

function slug(text) {
  return text.normalize("NFKD").replace(/[^\w-]+/g, "-").replace(/^-+|-+$/g, "").toLowerCase();
}

// ---------------------------------------------------------------- CSV

// A text cell that a spreadsheet would run as a formula gets a leading "'" (OWASP "CSV
// Injection"): the same rule as the API's CSV (src/entityflow/csvexport.py).
const FORMULA_START = /^[=+\-@\t\r\uFF1D\uFF0B\uFF0D\uFF20]/;

function csvCell(value) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" && FORMULA_START.test(value) ? `'${value}` : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function csvText(columns, rows) {
  return [columns, ...rows].map((row) => row.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

function downloadCsv(filename, columns, rows) {
  const blob = new Blob([csvText(columns, rows)], { type: "text/csv;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  say(`Downloaded ${filename}`);
}

function csvButton(text, filename, columns, rows) {
  return h("button", {
    type: "button", class: "csv", onclick: () => downloadCsv(filename, columns, rows),
  }, text);
}

// ---------------------------------------------------------------- the API

class Problem extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind; // "down" | "api" | "key"
  }
}

async function api(path, params) {
  const query = params && params.toString();
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers["X-API-Key"] = key;
  let response;
  try {
    response = await fetch(`/v1/${path}${query ? `?${query}` : ""}`, { headers });
  } catch {
    throw new Problem("down", "The entityflow service is not answering. Is it running?");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401) {
    const wrong = Boolean(key);
    sessionStorage.removeItem(KEY_STORE);
    throw new Problem("key", wrong ? "That API key was not accepted. Try another." : "");
  }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw new Problem(response.status >= 500 ? "down" : "api",
      `The service answered ${response.status}: ${message}`);
  }
  return body;
}

function params(entries) {
  const query = new URLSearchParams();
  for (const [name, value] of entries) {
    if (Array.isArray(value)) value.forEach((v) => query.append(name, v));
    else if (value !== "" && value !== null && value !== undefined) query.append(name, value);
  }
  return query;
}

// ---------------------------------------------------------------- state in the URL

function readState(search) {
  const q = new URLSearchParams(search);
  const view = VIEWS.includes(q.get("view")) ? q.get("view") : "overview";
  const limit = Number.parseInt(q.get("limit"), 10);
  const labels = q.getAll("label").map((l) => l.toUpperCase()).filter((l) => KNOWN_LABELS.has(l));
  return {
    view,
    publications: [...new Set(q.getAll("publication").filter(Boolean))],
    labels: [...new Set(labels)],
    since: isDate(q.get("since")) ? q.get("since") : "",
    until: isDate(q.get("until")) ? q.get("until") : "",
    limit: limit >= 1 && limit <= MAX_LIMIT ? limit : view === "compare" ? 10 : 20,
    sort: q.get("sort") === "mentions" ? "mentions" : "posts",
    key: (q.get("key") || "").trim(),
    interval: ["day", "week", "month"].includes(q.get("interval")) ? q.get("interval") : "week",
  };
}

/** The query string of a state: only what the view uses, defaults left out. */
function stateQuery(state) {
  const { view } = state;
  const entries = [["view", view]];
  if (view === "publication") {
    entries.push(["publication", state.publications.slice(0, 1)], ["label", state.labels],
      ["since", state.since], ["until", state.until]);
    if (state.limit !== 20) entries.push(["limit", state.limit]);
    if (state.sort !== "posts") entries.push(["sort", state.sort]);
  } else if (view === "compare") {
    entries.push(["publication", state.publications], ["label", state.labels]);
    if (state.limit !== 10) entries.push(["limit", state.limit]);
  } else if (view === "entity") {
    entries.push(["label", state.labels.slice(0, 1)], ["key", state.key],
      ["publication", state.publications], ["interval", state.interval],
      ["since", state.since], ["until", state.until]);
    if (state.sort !== "posts") entries.push(["sort", state.sort]);
  }
  return "?" + params(entries).toString();
}

const lastUrl = {};

function setUrl(state, replace) {
  const url = stateQuery(state);
  if (url !== location.search) history[replace ? "replaceState" : "pushState"](null, "", url);
  lastUrl[state.view] = url;
  for (const link of document.querySelectorAll("nav a[data-view]")) {
    if (lastUrl[link.dataset.view]) link.setAttribute("href", lastUrl[link.dataset.view]);
  }
}

function entityHref(entity, publications) {
  return stateQuery({
    view: "entity", labels: [entity.label], key: entity.key, publications: publications || [],
    interval: "week", since: "", until: "", sort: "posts",
  });
}

// ---------------------------------------------------------------- the page frame

let routeToken = 0;

async function route({ focus = false } = {}) {
  const state = readState(location.search);
  const token = ++routeToken;
  for (const link of document.querySelectorAll("nav a[data-view]")) {
    if (link.dataset.view === state.view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[state.view]} · entityflow`;
  const root = document.getElementById("view");
  root.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  root.setAttribute("aria-busy", "true");
  const view = h("div", { class: `view view-${state.view}` });
  try {
    await BUILDERS[state.view](view, state);
    if (token !== routeToken) return;
    root.replaceChildren(view);
  } catch (error) {
    if (token !== routeToken) return;
    root.replaceChildren(problemNode(error, () => route({ focus: true })));
    document.getElementById("api-key")?.focus();
  } finally {
    if (token === routeToken) root.removeAttribute("aria-busy");
  }
  if (focus) {
    const target = root.querySelector("h1, [data-focus]") || document.getElementById("main");
    target.setAttribute("tabindex", "-1");
    target.focus();
  }
}

function problemNode(error, retry) {
  if (error instanceof Problem && error.kind === "key") return keyForm(error.message, retry);
  const message = error instanceof Problem ? error.message : `Something went wrong: ${error}`;
  const title = error instanceof Problem && error.kind === "down"
    ? "Cannot reach the service" : "The request failed";
  return h("div", { class: "notice error", role: "alert", "data-focus": true },
    h("h2", {}, title), h("p", {}, message),
    h("button", { type: "button", onclick: retry }, "Try again"));
}

function keyForm(message, retry) {
  const input = h("input", {
    id: "api-key", name: "api-key", type: "password", autocomplete: "off", required: true,
    "aria-describedby": "api-key-help",
  });
  const form = h("form", {
    class: "notice key", "aria-labelledby": "api-key-title",
    onsubmit: (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_STORE, input.value.trim());
      retry();
    },
  },
  h("h1", { id: "api-key-title" }, "This service needs an API key to read"),
  h("p", { id: "api-key-help" },
    "Enter one of the service's API keys (ENTITYFLOW_API_KEYS). It is kept for this tab only ",
    "and sent only to this service."),
  message ? h("p", { class: "error", role: "alert" }, message) : null,
  h("label", { for: "api-key" }, "API key"), input,
  h("button", { type: "submit" }, "Continue"));
  return form;
}

function emptyNode(title, text) {
  return h("div", { class: "notice empty", role: "status" }, h("h2", {}, title), h("p", {}, text));
}

const NO_POSTS = () => h("div", { class: "notice empty", role: "status" },
  h("h2", {}, "No posts yet"),
  h("p", {}, "Nothing has been counted so far. Send posts to ", h("code", {}, "POST /v1/posts"),
    " or replay a CSV with ", h("code", {}, "entityflow replay"), ", then reload this page."));

/** Results that reload when the controls change; errors stay inside the results area. */
function resultsArea(load) {
  // Not a live region: the status line says what changed, rather than reading every row.
  const area = h("section", { class: "results", "aria-label": "Results" });
  let token = 0;
  const refresh = async () => {
    const mine = ++token;
    area.setAttribute("aria-busy", "true");
    try {
      const nodes = await load();
      if (mine === token) area.replaceChildren(...nodes.filter(Boolean));
    } catch (error) {
      if (mine === token) {
        area.replaceChildren(problemNode(error, refresh));
        document.getElementById("api-key")?.focus();
      }
    } finally {
      if (mine === token) area.removeAttribute("aria-busy");
    }
  };
  return { area, refresh };
}

// ---------------------------------------------------------------- shared controls

/** The label filter; folded away on narrow screens, where it would fill the first view. */
function labelFieldset(selected) {
  const summary = h("span", { class: "picked" }, labelsText(selected));
  const details = h("details", { class: "kinds", open: window.matchMedia("(min-width: 641px)").matches },
    h("summary", {}, "Kinds of entity: ", summary),
    h("fieldset", { class: "labels" },
      h("legend", { class: "visually-hidden" }, "Kinds of entity (none ticked: all)"),
      h("div", { class: "checks" }, LABELS.map(([code, name]) => h("label", { class: "check" },
        h("input", {
          type: "checkbox", name: "label", value: code, checked: selected.includes(code),
        }), ` ${name}`)))));
  details.addEventListener("change", () => {
    const ticked = [...details.querySelectorAll("input:checked")].map((input) => input.value);
    summary.textContent = labelsText(ticked);
  });
  return details;
}

function dateFields(state) {
  return [
    h("div", { class: "field" }, h("label", { for: "since" }, "From"),
      h("input", { id: "since", name: "since", type: "date", value: state.since })),
    h("div", { class: "field" }, h("label", { for: "until" }, "To"),
      h("input", { id: "until", name: "until", type: "date", value: state.until })),
  ];
}

function limitField(value) {
  return h("div", { class: "field" }, h("label", { for: "limit" }, "How many"),
    h("input", {
      id: "limit", name: "limit", type: "number", min: 1, max: MAX_LIMIT, step: 1,
      value, inputmode: "numeric",
    }));
}

function radios(name, legend, choices, value) {
  return h("fieldset", { class: "radios" }, h("legend", {}, legend),
    choices.map(([choice, text]) => h("label", { class: "check" },
      h("input", { type: "radio", name, value: choice, checked: choice === value }), ` ${text}`)));
}

/** Reads a controls form back into state; invalid numbers fall back to the old value. */
function formState(form, state) {
  const data = new FormData(form);
  const limit = Number.parseInt(data.get("limit"), 10);
  const next = { ...state };
  if (form.querySelector("[name=label]")) {
    next.labels = data.getAll("label").filter(Boolean);
  }
  if (form.querySelector("[name=publication]")) {
    next.publications = data.getAll("publication").filter(Boolean);
  }
  for (const name of ["since", "until"]) {
    if (form.querySelector(`[name=${name}]`)) next[name] = isDate(data.get(name)) ? data.get(name) : "";
  }
  if (form.querySelector("[name=limit]")) {
    next.limit = limit >= 1 && limit <= MAX_LIMIT ? limit : state.limit;
  }
  if (data.has("sort")) next.sort = data.get("sort");
  if (data.has("interval")) next.interval = data.get("interval");
  return next;
}

function controlsForm(children, onchange) {
  const form = h("form", { class: "controls", "aria-label": "Filters" }, children);
  form.addEventListener("change", () => onchange(form));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onchange(form);
  });
  return form;
}

function heading(title, subtitle) {
  return h("header", { class: "view-head" }, h("h1", {}, title),
    subtitle ? h("p", { class: "sub" }, subtitle) : null);
}

function toolbar(...buttons) {
  return h("div", { class: "toolbar" }, buttons);
}

/** Horizontal bars: one row per entity, the bar drawn in CSS, both counts in words. */
function bars(entities, measure, caption, publications) {
  const max = Math.max(1, ...entities.map((e) => e[measure]));
  return h("ol", { class: "bars", "aria-label": caption },
    entities.map((e) => h("li", { "data-label": e.label, "data-key": e.key },
      h("span", { class: "who" },
        h("a", { href: entityHref(e, publications), "data-nav": true, class: "name" }, e.text),
        h("span", { class: "chip" }, labelName(e.label))),
      h("span", { class: "bar", "aria-hidden": "true" },
        h("span", { style: `width:${(100 * e[measure]) / max}%` })),
      h("span", { class: "value" },
        numberNode(e.posts, "posts"), e.posts === 1 ? " post" : " posts", " · ",
        numberNode(e.mentions, "mentions"), e.mentions === 1 ? " mention" : " mentions"))));
}

const ENTITY_COLUMNS = ["text", "label", "key", "posts", "mentions"];
const entityRows = (entities) => entities.map((e) => [e.text, e.label, e.key, e.posts, e.mentions]);

function rangeText(state) {
  if (state.since && state.until) return `from ${formatDate(state.since)} to ${formatDate(state.until)}`;
  if (state.since) return `from ${formatDate(state.since)}`;
  if (state.until) return `up to ${formatDate(state.until)}`;
  return "over all dates";
}

function labelsText(labels) {
  return labels.length ? labels.map(labelName).join(", ") : "All kinds";
}

// ---------------------------------------------------------------- Overview

async function buildOverview(view, state) {
  setUrl(state, true);
  const [publications, top] = await Promise.all([
    api("publications"),
    api("entities", params([["limit", OVERVIEW_LIMIT], ["sort", "posts"]])),
  ]);
  const posts = publications.reduce((sum, p) => sum + p.posts, 0);
  const firsts = publications.map((p) => p.first_date).filter(Boolean).sort();
  const lasts = publications.map((p) => p.last_date).filter(Boolean).sort();
  view.append(heading("Overview", publications.length
    ? `${number.format(posts)} posts from ${number.format(publications.length)} publications, ` +
      `${formatDate(firsts[0])} to ${formatDate(lasts[lasts.length - 1])}.`
    : null));
  if (!publications.length) {
    view.append(NO_POSTS());
    return;
  }
  const pubRows = publications.map((p) => [p.name, p.posts, p.first_date, p.last_date]);
  view.append(h("section", { class: "panel", "aria-labelledby": "pubs-title" },
    h("div", { class: "panel-head" }, h("h2", { id: "pubs-title" }, "Publications"),
      csvButton("Download publications CSV", "entityflow-publications.csv",
        ["name", "posts", "first_date", "last_date"], pubRows)),
    h("div", { class: "scroll" }, h("table", { class: "publications" },
      h("caption", { class: "visually-hidden" }, "Publications with their posts and dates"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Publication"),
        h("th", { scope: "col", class: "num" }, "Posts"),
        h("th", { scope: "col" }, "First post"), h("th", { scope: "col" }, "Last post"))),
      h("tbody", {}, publications.map((p) => h("tr", { "data-name": p.name },
        h("th", { scope: "row" }, h("a", {
          href: stateQuery({ ...readState(""), view: "publication", publications: [p.name] }),
          "data-nav": true,
        }, p.name)),
        h("td", { class: "num" }, numberNode(p.posts, "posts")),
        h("td", {}, dateNode(p.first_date)), h("td", {}, dateNode(p.last_date)))))))));
  const entities = top.entities;
  view.append(h("section", { class: "panel", "aria-labelledby": "top-title" },
    h("div", { class: "panel-head" },
      h("h2", { id: "top-title" }, `Top ${number.format(OVERVIEW_LIMIT)} entities across all publications`),
      csvButton("Download entities CSV", "entityflow-top-entities.csv", ENTITY_COLUMNS,
        entityRows(entities))),
    h("p", { class: "sub" }, "Ranked by the number of posts that mention each."),
    entities.length ? bars(entities, "posts", "Top entities across all publications")
      : emptyNode("No entities yet", "The posts so far mention no entities of the counted kinds.")));
}

// ---------------------------------------------------------------- Publication

async function buildPublication(view, state) {
  const publications = await api("publications");
  if (!publications.length) {
    setUrl(state, true);
    view.append(heading("Publication"), NO_POSTS());
    return;
  }
  if (!state.publications.length) {
    const largest = [...publications].sort((a, b) => b.posts - a.posts || (a.name < b.name ? -1 : 1));
    state = { ...state, publications: [largest[0].name] };
  }
  setUrl(state, true);
  const name = state.publications[0];
  const known = publications.find((p) => p.name === name);
  const title = h("h1", {}, name);
  const sub = h("p", { class: "sub" }, known
    ? `${number.format(known.posts)} posts, ${formatDate(known.first_date)} to ${formatDate(known.last_date)}.`
    : "");
  view.append(h("header", { class: "view-head" }, title, sub));

  const { area, refresh } = resultsArea(async () => {
    const query = params([["publication", state.publications[0]], ["label", state.labels],
      ["since", state.since], ["until", state.until], ["limit", state.limit], ["sort", state.sort]]);
    const { entities } = await api("entities", query);
    const what = `Top ${number.format(state.limit)} entities in ${state.publications[0]} by ` +
      `${state.sort}; ${labelsText(state.labels).toLowerCase()}, ${rangeText(state)}`;
    say(`${entities.length} entities shown`);
    if (!entities.length) {
      return [emptyNode("Nothing matches these filters",
        "No entity of these kinds is mentioned in this date range. Widen the dates or tick more kinds.")];
    }
    return [
      toolbar(h("p", { class: "sub" }, what + "."),
        csvButton("Download CSV", `entityflow-${slug(state.publications[0])}-entities.csv`,
          ENTITY_COLUMNS, entityRows(entities))),
      bars(entities, state.sort, what),
    ];
  });

  const select = h("select", { id: "publication", name: "publication" },
    publications.map((p) => h("option", { value: p.name, selected: p.name === name }, p.name)));
  const form = controlsForm([
    h("div", { class: "row" },
      h("div", { class: "field" }, h("label", { for: "publication" }, "Publication"), select),
      ...dateFields(state), limitField(state.limit),
      radios("sort", "Rank by", [["posts", "Posts"], ["mentions", "Mentions"]], state.sort)),
    labelFieldset(state.labels),
  ], (form) => {
    state = formState(form, state);
    setUrl(state, false);
    const p = publications.find((item) => item.name === state.publications[0]);
    title.textContent = state.publications[0];
    sub.textContent = p
      ? `${number.format(p.posts)} posts, ${formatDate(p.first_date)} to ${formatDate(p.last_date)}.`
      : "";
    refresh();
  });
  view.append(form, area);
  await refresh();
}

// ---------------------------------------------------------------- Compare

/** Share of each publication's posts that mention each entity, from the API's top lists. */
function compareData(chosen, lists) {
  const byId = new Map();
  chosen.forEach((publication, index) => {
    for (const e of lists[index]) {
      if (!byId.has(entityId(e))) {
        byId.set(entityId(e), { text: e.text, label: e.label, key: e.key, posts: chosen.map(() => 0) });
      }
      byId.get(entityId(e)).posts[index] = e.posts;
    }
  });
  const entities = [...byId.values()].map((e) => ({
    ...e, shares: e.posts.map((posts, i) => posts / chosen[i].posts),
  }));
  const others = (e, i) => e.shares.filter((_, j) => j !== i).reduce((a, b) => a + b, 0) /
    (chosen.length - 1);
  const byText = (a, b) => (a.text < b.text ? -1 : a.text > b.text ? 1 : 0);
  const distinctive = chosen.map((_, i) => entities
    .filter((e) => e.posts[i] > 0)
    .map((e) => {
      const lift = e.shares[i] - others(e, i);
      // Ranked on the difference rounded to 1e-9, so float noise cannot order equal ones.
      return { ...e, share: e.shares[i], others: others(e, i), lift, rank: Math.round(lift * 1e9) };
    })
    .filter((e) => e.rank > 0)
    .sort((a, b) => b.rank - a.rank || b.share - a.share || byText(a, b)));
  const shared = entities
    .filter((e) => e.posts.every((posts) => posts > 0))
    .map((e) => ({ ...e, least: Math.min(...e.shares) }))
    .sort((a, b) => b.least - a.least || byText(a, b));
  return { shared, distinctive };
}

async function buildCompare(view, state) {
  const publications = await api("publications");
  if (!publications.length) {
    setUrl(state, true);
    view.append(heading("Compare"), NO_POSTS());
    return;
  }
  if (!state.publications.length) {
    const largest = [...publications].sort((a, b) => b.posts - a.posts || (a.name < b.name ? -1 : 1));
    state = { ...state, publications: largest.slice(0, 2).map((p) => p.name) };
  }
  setUrl(state, true);
  view.append(heading("Compare publications",
    "Pick two to four. A share is the share of a publication's posts that mention an entity. " +
    "Distinctive: ranked by the publication's share minus the mean share in the others " +
    "(in percentage points). Shared: mentioned by all, ranked by the smallest of their shares."));

  const { area, refresh } = resultsArea(async () => {
    const names = state.publications;
    if (names.length < 2 || names.length > 4) {
      return [emptyNode("Pick two to four publications",
        `${names.length} ${names.length === 1 ? "is" : "are"} ticked.`)];
    }
    const chosen = names.map((n) => publications.find((p) => p.name === n) || { name: n, posts: 0 });
    const lists = await Promise.all(names.map((n) => api("entities",
      params([["publication", n], ["label", state.labels], ["limit", MAX_LIMIT], ["sort", "posts"]]))
      .then((body) => body.entities)));
    const { shared, distinctive } = compareData(chosen, lists);
    const limit = state.limit;
    const sharedShown = shared.slice(0, limit);
    const distinctiveShown = distinctive.map((list) => list.slice(0, limit));
    const rows = [];
    for (const e of sharedShown) {
      chosen.forEach((p, i) => rows.push(["shared", p.name, e.text, e.label, e.key, e.posts[i],
        p.posts, pct(e.shares[i]), "", ""]));
    }
    distinctiveShown.forEach((list, i) => {
      for (const e of list) {
        rows.push(["distinctive", chosen[i].name, e.text, e.label, e.key, e.posts[i],
          chosen[i].posts, pct(e.share), pct(e.others), pct(e.lift)]);
      }
    });
    const truncated = lists.some((list) => list.length >= MAX_LIMIT);
    say(`Comparing ${names.join(", ")}`);
    return [
      toolbar(h("p", { class: "sub" }, `${labelsText(state.labels)}, over all dates; ` +
        `top ${number.format(limit)} of each list.`),
        csvButton("Download CSV", `entityflow-compare-${names.map(slug).join("-")}.csv`,
          ["section", "publication", "text", "label", "key", "posts", "publication_posts",
            "share_pct", "others_mean_share_pct", "difference_pct"], rows)),
      truncated ? h("p", { class: "notice" }, `Counts come from each publication's ` +
        `${number.format(MAX_LIMIT)} most-mentioned entities; rarer ones count as zero.`) : null,
      h("section", { class: "panel", "aria-labelledby": "shared-title" },
        h("h2", { id: "shared-title" }, "Shared by all"),
        sharedShown.length ? h("div", { class: "scroll" }, h("table", { class: "shared" },
          h("caption", { class: "visually-hidden" },
            "Entities every chosen publication mentions, with the share of each one's posts"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Entity"),
            chosen.map((p) => h("th", { scope: "col", class: "num" }, p.name)))),
          h("tbody", {}, sharedShown.map((e) => h("tr", { "data-label": e.label, "data-key": e.key },
            h("th", { scope: "row" }, h("a", { href: entityHref(e, names), "data-nav": true }, e.text),
              " ", h("span", { class: "chip" }, labelName(e.label))),
            e.shares.map((share, i) => h("td", { class: "num" }, percentNode(share),
              h("span", { class: "of" }, ` (${number.format(e.posts[i])})`))))))))
          : emptyNode("Nothing shared", "No entity of these kinds is mentioned by all of them.")),
      h("div", { class: "columns" }, distinctiveShown.map((list, i) => h("section", {
        class: "panel distinctive", "aria-labelledby": `distinct-${i}`, "data-publication": chosen[i].name,
      },
      h("h2", { id: `distinct-${i}` }, `Distinctive to ${chosen[i].name}`),
      h("p", { class: "sub" }, `${number.format(chosen[i].posts)} posts. Its share vs the others' mean share.`),
      list.length ? distinctiveBars(list, i, names)
        : emptyNode("Nothing distinctive", "No entity has a larger share here than in the others.")))),
    ];
  });

  const form = controlsForm([
    h("fieldset", { class: "pubs" }, h("legend", {}, "Publications (two to four)"),
      h("div", { class: "checks" }, publications.map((p) => h("label", { class: "check" },
        h("input", {
          type: "checkbox", name: "publication", value: p.name,
          checked: state.publications.includes(p.name),
        }), ` ${p.name}`)))),
    h("div", { class: "row" }, limitField(state.limit)),
    labelFieldset(state.labels),
  ], (form) => {
    state = formState(form, state);
    setUrl(state, false);
    refresh();
  });
  view.append(form, area);
  await refresh();
}

/** Bars of the ranking measure: the publication's share minus the others' mean share. */
function distinctiveBars(list, index, names) {
  const max = Math.max(...list.map((e) => e.lift));
  return h("ol", { class: "bars compact" }, list.map((e) => h("li", {
    "data-label": e.label, "data-key": e.key,
  },
  h("span", { class: "who" }, h("a", { href: entityHref(e, names), "data-nav": true, class: "name" },
    e.text), h("span", { class: "chip" }, labelName(e.label))),
  h("span", { class: "bar", "aria-hidden": "true" }, h("span", { style: `width:${(100 * e.lift) / max}%` })),
  h("span", { class: "value" }, percentNode(e.share), " vs ",
    h("data", { value: pct(e.others), class: "others" }, percent.format(e.others)),
    " (", h("data", { value: pct(e.lift), class: "lift" }, `+${points.format(100 * e.lift)} points`), ")",
    h("span", { class: "of" }, ` · ${number.format(e.posts[index])} ${e.posts[index] === 1 ? "post" : "posts"}`)))));
}

// ---------------------------------------------------------------- Entity

async function buildEntity(view, state) {
  const publications = await api("publications");
  if (!publications.length) {
    setUrl(state, true);
    view.append(heading("Entity"), NO_POSTS());
    return;
  }
  if (!state.key) {
    const { entities } = await api("entities", params([["limit", 1], ["label", state.labels]]));
    if (entities.length) state = { ...state, labels: [entities[0].label], key: entities[0].key };
  }
  if (!state.labels.length) state = { ...state, labels: ["PERSON"] };
  setUrl(state, true);

  const label = state.labels[0];
  const known = (await api("entities", params([["label", label], ["limit", 200]]))).entities;
  const display = () => (known.find((e) => e.key === state.key && e.label === state.labels[0]) ||
    { text: state.key }).text;
  const title = h("h1", {}, display() || "Entity");
  const sub = h("p", { class: "sub" }, `${labelName(label)} · key “${state.key}”`);
  view.append(h("header", { class: "view-head" }, title, sub));

  const { area, refresh } = resultsArea(async () => {
    if (!state.key) return [emptyNode("Pick an entity", "Type a name and press Enter.")];
    const body = await api("entities/timeline", params([["label", state.labels[0]], ["key", state.key],
      ["publication", state.publications], ["interval", state.interval],
      ["since", state.since], ["until", state.until]]));
    return timeline(body, state, display());
  });

  const names = h("datalist", { id: "entity-names" },
    known.map((e) => h("option", { value: e.text })));
  const nameInput = h("input", {
    id: "entity-name", name: "name", list: "entity-names", value: display(),
    autocomplete: "off", "aria-describedby": "entity-name-help",
  });
  const labelSelect = h("select", { id: "entity-label", name: "entity-label" },
    LABELS.map(([code, text]) => h("option", { value: code, selected: code === label }, text)));
  const form = controlsForm([
    h("div", { class: "row" },
      h("div", { class: "field" }, h("label", { for: "entity-label" }, "Kind"), labelSelect),
      h("div", { class: "field grow" }, h("label", { for: "entity-name" }, "Name"), nameInput,
        h("small", { id: "entity-name-help" }, "Press Enter to show it.")),
      radios("interval", "Per", [["day", "Day"], ["week", "Week"], ["month", "Month"]], state.interval),
      radios("sort", "Count", [["posts", "Posts"], ["mentions", "Mentions"]], state.sort),
      ...dateFields(state)),
    h("fieldset", { class: "pubs" }, h("legend", {}, "Publications (none ticked: all that mention it)"),
      h("div", { class: "checks" }, publications.map((p) => h("label", { class: "check" },
        h("input", {
          type: "checkbox", name: "publication", value: p.name,
          checked: state.publications.includes(p.name),
        }), ` ${p.name}`)))),
  ], (form) => {
    const next = formState(form, state);
    const typed = nameInput.value.trim();
    const labelChanged = labelSelect.value !== state.labels[0];
    next.labels = [labelSelect.value];
    const match = known.find((e) => e.text === typed && e.label === labelSelect.value);
    next.key = match ? match.key : entityKey(typed);
    if (labelChanged || next.key !== state.key) {
      // Another entity: a fresh view, so its name list and title match it.
      history.pushState(null, "", stateQuery(next));
      route({ focus: true });
      return;
    }
    state = next;
    setUrl(state, false);
    refresh();
  });
  // Typing in the name box must wait for Enter, not re-run on each change event.
  nameInput.addEventListener("change", (event) => event.stopPropagation());
  view.append(form, names, area);
  await refresh();
}

function timeline(body, state, name) {
  const measure = state.sort;
  const series = body.series.map((s) => ({
    ...s, total: s.points.reduce((sum, p) => sum + p[measure], 0),
  }));
  if (!series.length || series.every((s) => s.total === 0)) {
    say("No mentions");
    return [emptyNode("No mentions", `No post mentions ${name} ${rangeText(state)}` +
      (state.publications.length ? " in the ticked publications." : "."))];
  }
  const axis = series[0].points.map((p) => p.date);
  const peak = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[measure])));
  const unit = measure;
  const units = (n) => `${number.format(n)} ${n === 1 ? unit.slice(0, -1) : unit}`;
  const period = { day: "Day", week: "Week of", month: "Month of" }[state.interval];
  const periodText = (iso) => state.interval === "month"
    ? new Intl.DateTimeFormat(undefined, { month: "long", year: "numeric", timeZone: "UTC" })
      .format(new Date(iso + "T00:00:00Z"))
    : formatDate(iso);
  const columns = [`${state.interval}_starting`, ...series.map((s) => s.publication)];
  const rows = axis.map((day, i) => [day, ...series.map((s) => s.points[i][measure])]);
  const filename = `entityflow-timeline-${slug(body.label)}-${slug(body.key)}-${state.interval}-${measure}.csv`;
  say(`${series.length} publications, ${axis.length} ${state.interval}s`);
  return [
    toolbar(h("p", { class: "sub" }, (measure === "posts" ? `Posts that mention ${name}`
      : `Mentions of ${name}`) + ` per ${state.interval}, ${rangeText(state)}. Every chart uses ` +
      `the same scale (highest: ${number.format(peak)}).`),
    csvButton("Download CSV", filename, columns, rows)),
    h("ul", { class: "multiples" }, series.map((s) => {
      const top = s.points.reduce((best, p) => (p[measure] > best[measure] ? p : best), s.points[0]);
      const summary = `${s.publication}: ${units(s.total)} in total` +
        (s.total ? `; highest ${number.format(top[measure])} (${period.toLowerCase()} ${periodText(top.date)})` : "");
      const chart = svg("svg", {
        viewBox: `0 0 ${axis.length} 100`, preserveAspectRatio: "none", role: "img",
        "aria-label": summary, class: "spark",
      }, ...s.points.map((p, i) => {
        const height = (100 * p[measure]) / peak;
        return svg("rect", { x: i + 0.12, y: 100 - height, width: 0.76, height },
          svg("title", {}, `${period} ${periodText(p.date)}: ${units(p[measure])}`));
      }));
      return h("li", { "data-publication": s.publication },
        h("div", { class: "multiple-head" }, h("strong", {}, s.publication),
          h("span", {}, numberNode(s.total, "total"), s.total === 1 ? ` ${unit.slice(0, -1)}` : ` ${unit}`)),
        chart,
        h("div", { class: "axis", "aria-hidden": "true" },
          h("span", {}, periodText(axis[0])), h("span", {}, periodText(axis[axis.length - 1]))));
    })),
    h("details", { class: "panel" }, h("summary", {}, "The numbers as a table"),
      h("div", { class: "scroll" }, h("table", { class: "timeline" },
        h("caption", { class: "visually-hidden" }, `${unit} per ${state.interval}`),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, period),
          series.map((s) => h("th", { scope: "col", class: "num" }, s.publication)))),
        h("tbody", {}, axis.map((day, i) => h("tr", {}, h("th", { scope: "row" }, dateNode(day)),
          series.map((s) => h("td", { class: "num" }, numberNode(s.points[i][measure]))))))))),
  ];
}

// ---------------------------------------------------------------- start

const BUILDERS = {
  overview: buildOverview, publication: buildPublication, compare: buildCompare, entity: buildEntity,
};

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-nav]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
    event.shiftKey || event.altKey) return;
  event.preventDefault();
  const url = new URL(link.href, location.href);
  if (url.search !== location.search) history.pushState(null, "", url.search || "?view=overview");
  route({ focus: true });
});
window.addEventListener("popstate", () => route({ focus: true }));
route();
