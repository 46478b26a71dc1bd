// State in the URL: what a view shows is its query string.

import { KNOWN_LABELS, VIEWS, MAX_LIMIT, isDate } from "./common.js";
import { params } from "./api.js";

export function readState(search) {
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
    sort: ["mentions", "share"].includes(q.get("sort")) ? q.get("sort") : "posts",
    key: (q.get("key") || "").trim(),
    interval: ["day", "week", "month"].includes(q.get("interval")) ? q.get("interval") : "week",
    // Other entities on the same chart, as LABEL:key (at most three).
    also: [...new Set(q.getAll("also").filter((a) => KNOWN_LABELS.has(a.split(":")[0]) &&
      a.indexOf(":") > 0))].slice(0, 3),
    as: q.get("as") === "entities" ? "entities" : "topics",
  };
}

/** The query string of a state: only what the view uses, defaults left out. */
export function stateQuery(state) {
  const { view } = state;
  const entries = [["view", view]];
  if (view === "publication") {
    entries.push(["publication", state.publications.slice(0, 1)], ["label", state.labels],
      ["since", state.since], ["until", state.until]);
    if (state.limit !== 20) entries.push(["limit", state.limit]);
    if (state.sort !== "posts") entries.push(["sort", state.sort]);
  } else if (view === "compare") {
    entries.push(["publication", state.publications], ["label", state.labels],
      ["since", state.since], ["until", state.until]);
    if (state.limit !== 10) entries.push(["limit", state.limit]);
  } else if (view === "posts") {
    entries.push(["label", state.labels.slice(0, 1)], ["key", state.key],
      ["publication", state.publications], ["since", state.since], ["until", state.until]);
  } else if (view === "entity") {
    entries.push(["label", state.labels.slice(0, 1)], ["key", state.key],
      ["publication", state.publications], ["interval", state.interval],
      ["since", state.since], ["until", state.until], ["also", state.also || []]);
    if (state.sort !== "posts") entries.push(["sort", state.sort]);
  }
  if (state.as === "entities") entries.push(["as", "entities"]);
  return "?" + params(entries).toString();
}

const lastUrl = {};

export function setUrl(state, replace) {
  const url = stateQuery(state);
  if (url !== location.search) history[replace ? "replaceState" : "pushState"](null, "", url);
  lastUrl[state.view] = url;
  // Topics or entities is one choice for the whole dashboard: every link keeps it.
  for (const link of document.querySelectorAll("nav a[data-view], a.brand")) {
    const view = link.dataset.view || "overview";
    const query = new URLSearchParams(lastUrl[view] || `?view=${view}`);
    if (state.as === "entities") query.set("as", "entities");
    else query.delete("as");
    link.setAttribute("href", "?" + query.toString());
  }
}

export function entityHref(entity, publications, as) {
  return stateQuery({
    view: "entity", labels: [entity.label], key: entity.key, publications: publications || [],
    interval: "week", since: "", until: "", sort: "posts", as: as || "topics",
  });
}

/** The story list behind a count: the posts that mention `entity` (a topic unless `as` is
 * "entities") under the same filters. */
export function postsHref(entity, publications, since, until, as) {
  return stateQuery({
    view: "posts", labels: [entity.label], key: entity.key, publications: publications || [],
    since: since || "", until: until || "", interval: "week", sort: "posts", limit: 20,
    as: as || "topics",
  });
}
