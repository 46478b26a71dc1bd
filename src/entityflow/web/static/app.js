// The entityflow dashboard: four views over the public JSON API (/v1), state in the query
// string, CSV of whatever is on screen. Plain JS modules, no build step, nothing loaded from
// elsewhere. This module wires the views into the page frame and starts it.

import { h } from "./lib/common.js";
import { BUILDERS, route } from "./lib/frame.js";
import { entityHref, readState, stateQuery } from "./lib/state.js";
import { kindNow, resolveEntity, suggest } from "./lib/find.js";
import { buildOverview } from "./views/overview.js";
import { buildPublication } from "./views/publication.js";
import { buildCompare } from "./views/compare.js";
import { buildEntity } from "./views/entity.js";
import { buildPosts } from "./views/posts.js";

Object.assign(BUILDERS, {
  overview: buildOverview, publication: buildPublication, compare: buildCompare, entity: buildEntity,
  posts: buildPosts,
});

/** "Find an entity" in the header: from any view, whatever kind, to its Entity view; a topic
 * when the page shows topics, a raw entity when it shows them "as spaCy found them". */
function headerSearch() {
  const list = h("datalist", { id: "find-names" });
  const input = h("input", {
    id: "find", type: "search", name: "q", list: "find-names", autocomplete: "off",
    placeholder: "Find an entity", "aria-label": "Find an entity (any kind)",
  });
  suggest(input, list);
  const form = h("form", { role: "search", class: "find" }, input, list);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    const kind = kindNow();
    let found = null;
    try {
      found = await resolveEntity(text, null, kind);
    } catch {
      found = null; // The Entity view shows the problem itself.
    }
    const href = found ? entityHref(found, [], kind)
      : stateQuery({ ...readState(location.search), view: "entity", labels: ["PERSON"], key: text });
    input.value = "";
    history.pushState(null, "", href);
    route({ focus: true });
  });
  document.querySelector("header.top").append(form);
}

headerSearch();

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
