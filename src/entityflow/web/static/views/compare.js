// Compare: shared and distinctive entities of two to four publications.

import {
  MAX_LIMIT,
  number,
  percent,
  points,
  h,
  percentNode,
  pct,
  entityId,
  labelName,
  say,
  slug,
} from "../lib/common.js";
import { csvButton } from "../lib/csv.js";
import { api, params } from "../lib/api.js";
import { setUrl, entityHref } from "../lib/state.js";
import { emptyNode, NO_POSTS, resultsArea } from "../lib/frame.js";
import {
  labelFieldset,
  limitField,
  formState,
  controlsForm,
  heading,
  toolbar,
  labelsText,
} from "../lib/controls.js";
import { topList, showSwitch } from "../lib/topics.js";

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
    const lists = await Promise.all(names.map((n) => topList(state,
      params([["publication", n], ["label", state.labels], ["limit", MAX_LIMIT], ["sort", "posts"]]))));
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
            h("th", { scope: "row" }, h("a", { href: entityHref(e, names, state.as), "data-nav": true }, e.text),
              " ", h("span", { class: "chip" }, labelName(e.label))),
            e.shares.map((share, i) => h("td", { class: "num" }, percentNode(share),
              h("span", { class: "of" }, ` (${number.format(e.posts[i])})`))))))))
          : emptyNode("Nothing shared", "No entity of these kinds is mentioned by all of them.")),
      h("div", { class: "columns" }, distinctiveShown.map((list, i) => h("section", {
        class: "panel distinctive", "aria-labelledby": `distinct-${i}`, "data-publication": chosen[i].name,
      },
      h("h2", { id: `distinct-${i}` }, `Distinctive to ${chosen[i].name}`),
      h("p", { class: "sub" }, `${number.format(chosen[i].posts)} posts. Its share vs the others' mean share.`),
      list.length ? distinctiveBars(list, i, names, state.as)
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
    h("div", { class: "row" }, limitField(state.limit), showSwitch(state)),
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
function distinctiveBars(list, index, names, as) {
  const max = Math.max(...list.map((e) => e.lift));
  return h("ol", { class: "bars compact" }, list.map((e) => h("li", {
    "data-label": e.label, "data-key": e.key,
  },
  h("span", { class: "who" }, h("a", { href: entityHref(e, names, as), "data-nav": true, class: "name" },
    e.text), h("span", { class: "chip" }, labelName(e.label))),
  h("span", { class: "bar", "aria-hidden": "true" }, h("span", { style: `width:${(100 * e.lift) / max}%` })),
  h("span", { class: "value" }, percentNode(e.share), " vs ",
    h("data", { value: pct(e.others), class: "others" }, percent.format(e.others)),
    " (", h("data", { value: pct(e.lift), class: "lift" }, `+${points.format(100 * e.lift)} points`), ")",
    h("span", { class: "of" }, ` · ${number.format(e.posts[index])} ${e.posts[index] === 1 ? "post" : "posts"}`)))));
}
