// The entityflow dashboard: four views over the public JSON API (/v1), state in the query
// string, CSV of whatever is on screen. Plain JS modules, no build step, nothing loaded from
// elsewhere. This module wires the views into the page frame and starts it.

import { BUILDERS, route } from "./lib/frame.js";
import { buildOverview } from "./views/overview.js";
import { buildPublication } from "./views/publication.js";
import { buildCompare } from "./views/compare.js";
import { buildEntity } from "./views/entity.js";

Object.assign(BUILDERS, {
  overview: buildOverview, publication: buildPublication, compare: buildCompare, entity: buildEntity,
});

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
