// Publication: one publication's top entities.

import { number, h, formatDate, say, slug } from "../lib/common.js";
import { csvButton } from "../lib/csv.js";
import { api, params } from "../lib/api.js";
import { setUrl } from "../lib/state.js";
import { emptyNode, NO_POSTS, resultsArea } from "../lib/frame.js";
import {
  labelFieldset,
  dateFields,
  limitField,
  radios,
  formState,
  controlsForm,
  heading,
  toolbar,
  bars,
  ENTITY_COLUMNS,
  entityRows,
  rangeText,
  labelsText,
} from "../lib/controls.js";
import { topList, showSwitch, aliasesNode, listCsv } from "../lib/topics.js";

export async function buildPublication(view, state) {
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
    const entities = await topList(state, query);
    const kind = state.as === "entities" ? "entities" : "topics";
    const [columns, rows] = listCsv(state, entities, ENTITY_COLUMNS, entityRows);
    const what = `Top ${number.format(state.limit)} ${kind} in ${state.publications[0]} by ` +
      `${state.sort}; ${labelsText(state.labels).toLowerCase()}, ${rangeText(state)}`;
    say(`${entities.length} entities shown`);
    if (!entities.length) {
      return [emptyNode("Nothing matches these filters",
        "No entity of these kinds is mentioned in this date range. Widen the dates or tick more kinds.")];
    }
    return [
      toolbar(h("p", { class: "sub" }, what + "."),
        csvButton("Download CSV", `entityflow-${slug(state.publications[0])}-${kind}.csv`,
          columns, rows)),
      bars(entities, state.sort, what, undefined, state.as, aliasesNode),
    ];
  });

  const select = h("select", { id: "publication", name: "publication" },
    publications.map((p) => h("option", { value: p.name, selected: p.name === name }, p.name)));
  const form = controlsForm([
    h("div", { class: "row" },
      h("div", { class: "field" }, h("label", { for: "publication" }, "Publication"), select),
      ...dateFields(state), limitField(state.limit),
      radios("sort", "Rank by", [["posts", "Posts"], ["mentions", "Mentions"]], state.sort),
      showSwitch(state)),
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
