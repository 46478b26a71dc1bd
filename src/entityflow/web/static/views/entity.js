// Entity: one entity's timeline per publication.

import {
  LABELS,
  number,
  h,
  svg,
  formatDate,
  dateNode,
  numberNode,
  labelName,
  say,
  entityKey,
  slug,
} from "../lib/common.js";
import { csvButton } from "../lib/csv.js";
import { api, params } from "../lib/api.js";
import { stateQuery, setUrl } from "../lib/state.js";
import { route, emptyNode, NO_POSTS, resultsArea } from "../lib/frame.js";
import {
  dateFields,
  radios,
  formState,
  controlsForm,
  heading,
  toolbar,
  rangeText,
} from "../lib/controls.js";
import { topList, timelinePath, showSwitch } from "../lib/topics.js";

export async function buildEntity(view, state) {
  const publications = await api("publications");
  if (!publications.length) {
    setUrl(state, true);
    view.append(heading("Entity"), NO_POSTS());
    return;
  }
  if (!state.key) {
    const entities = await topList(state, params([["limit", 1], ["label", state.labels]]));
    if (entities.length) state = { ...state, labels: [entities[0].label], key: entities[0].key };
  }
  if (!state.labels.length) state = { ...state, labels: ["PERSON"] };
  setUrl(state, true);

  const label = state.labels[0];
  const known = await topList(state, params([["label", label], ["limit", 200]]));
  const display = () => (known.find((e) => e.key === state.key && e.label === state.labels[0]) ||
    { text: state.key }).text;
  const title = h("h1", {}, display() || "Entity");
  const sub = h("p", { class: "sub" }, `${labelName(label)} · key “${state.key}”`);
  view.append(h("header", { class: "view-head" }, title, sub));

  const { area, refresh } = resultsArea(async () => {
    if (!state.key) return [emptyNode("Pick an entity", "Type a name and press Enter.")];
    const body = await api(timelinePath(state), params([["label", state.labels[0]], ["key", state.key],
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
      showSwitch(state),
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
    const labelChanged = labelSelect.value !== state.labels[0] || next.as !== state.as;
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
