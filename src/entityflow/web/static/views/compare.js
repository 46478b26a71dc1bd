// Compare: each topic's (or entity's) share of each publication's posts, computed by the
// service over every one (GET /v1/compare, kind=topics or entities), shared and distinctive,
// over a date range.

import {
  number, percent, points, h, percentNode, pct, labelName, say, formatDate,
} from "../lib/common.js";
import { csvButton } from "../lib/csv.js";
import { api, params } from "../lib/api.js";
import { setUrl, stateQuery, entityHref, postsHref } from "../lib/state.js";
import { emptyNode, NO_POSTS, resultsArea, setTitle } from "../lib/frame.js";
import {
  labelFieldset, limitField, dateFields, formState, controlsForm, heading, toolbar, labelsText,
  rangeText,
} from "../lib/controls.js";
import { showSwitch } from "../lib/topics.js";

const MOST = 10;
const kindOf = (state) => (state.as === "entities" ? "entities" : "topics");
const noun = (state) => (state.as === "entities" ? "entity" : "topic");
const DAY = 86400000;

export async function buildCompare(view, state) {
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
    `Pick two to ${MOST}. A share is the share of a publication's posts in the date range that ` +
    "mention a topic (or an entity), counted over every one. Distinctive: ranked by the publication's " +
    "share minus the mean of the others' shares (in percentage points). Shared: mentioned by " +
    "all, ranked by the smallest of their shares."));

  const { area, refresh } = resultsArea(async () => {
    const names = state.publications;
    setTitle(names.join(" vs "));
    if (names.length < 2 || names.length > MOST) {
      return [emptyNode(`Pick two to ${MOST} publications`,
        `${names.length} ${names.length === 1 ? "is" : "are"} ticked.`)];
    }
    const entries = [["publication", names], ["label", state.labels], ["since", state.since],
      ["until", state.until], ["limit", state.limit], ["kind", kindOf(state)]];
    const [distinctive, shared] = await Promise.all([
      api("compare", params([...entries, ["sort", "distinctive"]])),
      api("compare", params([...entries, ["sort", "shared"]])),
    ]);
    const chosen = distinctive.publications;
    say(`Comparing ${names.join(", ")}`);
    return [
      toolbar(h("p", { class: "sub" }, `${labelsText(state.labels)}, ${rangeText(state)}; ` +
        `top ${number.format(state.limit)} of each list.`),
        csvButton("Download distinctive CSV", "compare", [...entries, ["sort", "distinctive"]]),
        csvButton("Download shared CSV", "compare", [...entries, ["sort", "shared"]])),
      overlapWarning(chosen, state),
      sharedPanel(shared.entities, chosen, state),
      h("div", { class: "columns" }, chosen.map((p, i) => {
        const list = distinctive.entities.filter((e) => e.distinctive_to === p.name);
        return h("section", {
          class: "panel distinctive", "aria-labelledby": `distinct-${i}`, "data-publication": p.name,
        },
        h("h2", { id: `distinct-${i}` }, `Distinctive to ${p.name}`),
        h("p", { class: "sub" }, `${number.format(p.posts)} posts ${rangeText(state)}. ` +
          "Its share vs the others' mean share."),
        list.length ? distinctiveBars(list, p.name, names, state)
          : emptyNode("Nothing distinctive", `No ${noun(state)} has a larger share here than in the others.`));
      })),
    ];
  });

  const form = controlsForm([
    h("fieldset", { class: "pubs" }, h("legend", {}, `Publications (two to ${MOST})`),
      h("div", { class: "checks" }, publications.map((p) => h("label", { class: "check" },
        h("input", {
          type: "checkbox", name: "publication", value: p.name,
          checked: state.publications.includes(p.name),
        }), ` ${p.name}`)))),
    h("div", { class: "row" }, ...dateFields(state), limitField(state.limit), showSwitch(state)),
    labelFieldset(state.labels),
  ], (form) => {
    state = formState(form, state);
    setUrl(state, false);
    refresh();
  });
  view.append(form, area);
  await refresh();
}

/** A warning when the publications' posts in the range cover periods that barely overlap. */
function overlapWarning(chosen, state) {
  const spans = chosen.filter((p) => p.first_date && p.last_date);
  if (spans.length < 2) return null;
  const time = (iso) => Date.parse(iso + "T00:00:00Z");
  const start = Math.max(...spans.map((p) => time(p.first_date)));
  const end = Math.min(...spans.map((p) => time(p.last_date)));
  const shortest = Math.min(...spans.map((p) => time(p.last_date) - time(p.first_date) + DAY));
  const common = Math.max(0, end - start + DAY);
  if (common >= shortest / 2) return null;
  const covers = spans.map((p) => `${p.name}: ${formatDate(p.first_date)} to ${formatDate(p.last_date)}`);
  const iso = (ms) => new Date(ms).toISOString().slice(0, 10);
  return h("div", { class: "notice warning overlap", role: "note" },
    h("h2", {}, common ? "These publications' dates barely overlap" : "These publications' dates do not overlap"),
    h("p", {}, `Their posts ${rangeText(state)} cover different periods, so their shares describe ` +
      `different news. ${covers.join("; ")}.`),
    common ? h("p", {}, h("a", {
      href: stateQuery({ ...state, since: iso(start), until: iso(end) }), "data-nav": true,
    }, `Compare only ${formatDate(iso(start))} to ${formatDate(iso(end))}, when all of them published`))
      : null);
}

function countLink(e, name, state) {
  const n = e.posts[name];
  return h("a", {
    href: postsHref(e, [name], state.since, state.until, state.as), "data-nav": true, class: "of stories",
    title: `The posts of ${name} that mention ${e.text}`,
  }, `${number.format(n)} ${n === 1 ? "post" : "posts"}`);
}

function sharedPanel(entities, chosen, state) {
  const names = chosen.map((p) => p.name);
  return h("section", { class: "panel", "aria-labelledby": "shared-title" },
    h("h2", { id: "shared-title" }, "Shared by all"),
    entities.length ? h("div", { class: "scroll" }, h("table", { class: "shared" },
      h("caption", { class: "visually-hidden" },
        `${state.as === "entities" ? "Entities" : "Topics"} every chosen publication mentions, ` +
        "with the share of each one's posts"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, state.as === "entities" ? "Entity" : "Topic"),
        names.map((name) => h("th", { scope: "col", class: "num" }, name)))),
      h("tbody", {}, entities.map((e) => h("tr", { "data-label": e.label, "data-key": e.key },
        h("th", { scope: "row" }, h("a", { href: entityHref(e, names, state.as), "data-nav": true }, e.text),
          " ", h("span", { class: "chip" }, labelName(e.label))),
        names.map((name) => h("td", { class: "num" }, percentNode(e.share[name]), " ",
          countLink(e, name, state))))))))
      : emptyNode("Nothing shared", `No ${noun(state)} of these kinds is mentioned by all of them.`));
}

/** Bars of the ranking measure: the publication's share minus the others' mean share. */
function distinctiveBars(list, name, names, state) {
  const max = Math.max(...list.map((e) => e.lift));
  return h("ol", { class: "bars compact" }, list.map((e) => {
    const share = e.share[name];
    const others = share - e.lift;
    return h("li", { "data-label": e.label, "data-key": e.key },
      h("span", { class: "who" }, h("a", { href: entityHref(e, names, state.as), "data-nav": true, class: "name" },
        e.text), h("span", { class: "chip" }, labelName(e.label))),
      h("span", { class: "bar", "aria-hidden": "true" }, h("span", { style: `width:${(100 * e.lift) / max}%` })),
      h("span", { class: "value" }, percentNode(share), " vs ",
        h("data", { value: pct(others), class: "others" }, percent.format(others)),
        " (", h("data", { value: pct(e.lift), class: "lift" }, `+${points.format(100 * e.lift)} points`), ")",
        " · ", countLink(e, name, state)));
  }));
}
