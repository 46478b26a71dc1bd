// Overview: publications and the top entities across all of them.

import { number, h, formatDate, dateNode, numberNode } from "../lib/common.js";
import { csvButton } from "../lib/csv.js";
import { api, params } from "../lib/api.js";
import { readState, stateQuery, setUrl } from "../lib/state.js";
import { emptyNode, NO_POSTS, route } from "../lib/frame.js";
import { heading, bars, ENTITY_COLUMNS, entityRows, controlsForm, formState } from "../lib/controls.js";
import { topList, showSwitch, aliasesNode, listCsv } from "../lib/topics.js";

const OVERVIEW_LIMIT = 20;

export async function buildOverview(view, state) {
  setUrl(state, true);
  const [publications, top] = await Promise.all([
    api("publications"),
    topList(state, params([["limit", OVERVIEW_LIMIT], ["sort", "posts"]])),
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
          href: stateQuery({
            ...readState(""), view: "publication", publications: [p.name], as: state.as,
          }),
          "data-nav": true,
        }, p.name)),
        h("td", { class: "num" }, numberNode(p.posts, "posts")),
        h("td", {}, dateNode(p.first_date)), h("td", {}, dateNode(p.last_date)))))))));
  const entities = top;
  const what = state.as === "entities" ? "entities" : "topics";
  const [columns, rows] = listCsv(state, entities, ENTITY_COLUMNS, entityRows);
  const form = controlsForm([h("div", { class: "row" }, showSwitch(state))], (form) => {
    history.pushState(null, "", stateQuery(formState(form, state)));
    route({ focus: false });
  });
  view.append(form, h("section", { class: "panel", "aria-labelledby": "top-title" },
    h("div", { class: "panel-head" },
      h("h2", { id: "top-title" }, `Top ${number.format(OVERVIEW_LIMIT)} ${what} across all publications`),
      csvButton(`Download ${what} CSV`, `entityflow-top-${what}.csv`, columns, rows)),
    h("p", { class: "sub" }, "Ranked by the number of posts that mention each." +
      (state.as === "entities" ? " As spaCy found them: one row per string and kind."
        : " A topic counts every form of its name (open “forms”); a post once.")),
    entities.length ? bars(entities, "posts", `Top ${what} across all publications`, undefined,
      state.as, aliasesNode)
      : emptyNode("No entities yet", "The posts so far mention no entities of the counted kinds.")));
}
