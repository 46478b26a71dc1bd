// Entity: one entity over time in each publication, as posts, mentions or the share of the
// publication's own posts, on one axis over the whole range.

import {
  LABELS, number, percent, h, svg, formatDate, dateNode, numberNode, labelName, say,
} from "../lib/common.js";
import { csvButton } from "../lib/csv.js";
import { api, params } from "../lib/api.js";
import { stateQuery, setUrl, entityHref, postsHref } from "../lib/state.js";
import { route, emptyNode, NO_POSTS, resultsArea, setTitle } from "../lib/frame.js";
import { dateFields, radios, formState, controlsForm, heading, toolbar, rangeText } from "../lib/controls.js";
import { findEntities, resolveEntity, suggest } from "../lib/find.js";
import { topList, timelinePath, showSwitch } from "../lib/topics.js";

const MEASURES = { posts: "posts that mention it", mentions: "mentions", share: "share of its posts" };

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
  const title = h("h1", {}, state.key || "Entity");
  const sub = h("p", { class: "sub" }, labelName(label));
  view.append(h("header", { class: "view-head" }, title, sub));
  let name = state.key;

  const { area, refresh } = resultsArea(async () => {
    if (!state.key) return [emptyNode("Pick an entity", "Type a name and press Enter.")];
    // The axis covers the whole range: open ends are the publications' first and last posts.
    const chosen = publications.filter((p) => !state.publications.length ||
      state.publications.includes(p.name));
    const since = state.since || chosen.map((p) => p.first_date).sort()[0] || "";
    const until = state.until || chosen.map((p) => p.last_date).sort().pop() || "";
    const entries = [["label", state.labels[0]], ["key", state.key],
      ["publication", state.publications], ["interval", state.interval],
      ["since", since], ["until", until]];
    const others = (state.also || []).map((id) => {
      const at = id.indexOf(":");
      return [["label", id.slice(0, at)], ["key", id.slice(at + 1)]];
    });
    const [body, ...extra] = await Promise.all([entries, ...others.map((entity) =>
      [...entity, ...entries.slice(2)])].map((query) => api(timelinePath(state), params(query))));
    // A typed name or a hand-made link carries text, not a key: the service's rule made the
    // key it answered with (the page has no copy of that rule), and the address keeps it.
    if (body.key !== state.key) {
      state = { ...state, key: body.key };
      entries[1] = ["key", body.key];
      setUrl(state, true);
    }
    // A topic's timeline has no text: its name is in the topic list.
    name = body.text || (state.as === "entities" ? "" : await topicName(state)) || state.key;
    title.textContent = name;
    nameInput.value = name;
    setTitle([name, ...extra.map((b) => b.text || b.key)].join(", "));
    return timeline(body, state, name, entries, extra);
  });

  const names = h("datalist", { id: "entity-names" });
  const nameInput = h("input", {
    id: "entity-name", name: "name", list: "entity-names", value: state.key,
    autocomplete: "off", "aria-describedby": "entity-name-help",
  });
  suggest(nameInput, names);
  const alsoNames = h("datalist", { id: "entity-also-names" });
  const alsoInput = h("input", {
    id: "entity-also", name: "also-name", list: "entity-also-names", autocomplete: "off",
  });
  suggest(alsoInput, alsoNames);
  alsoInput.addEventListener("change", (event) => event.stopPropagation());
  alsoInput.addEventListener("keydown", async (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    const found = await resolveEntity(alsoInput.value.trim(), null);
    if (!found) {
      say(`Nothing is called ${alsoInput.value.trim()}`);
      return;
    }
    state = { ...state, also: [...new Set([...(state.also || []), `${found.label}:${found.key}`])].slice(0, 3) };
    alsoInput.value = "";
    setUrl(state, false);
    refresh();
  });
  const labelSelect = h("select", { id: "entity-label", name: "entity-label" },
    LABELS.map(([code, text]) => h("option", { value: code, selected: code === label }, text)));
  const narrow = window.matchMedia("(max-width: 640px)").matches;
  const form = controlsForm([
    h("div", { class: "row" },
      h("div", { class: "field grow" }, h("label", { for: "entity-name" }, "Name"), nameInput,
        h("small", { id: "entity-name-help" }, "Any kind; press Enter to show it.")),
      h("div", { class: "field" }, h("label", { for: "entity-label" }, "Kind"), labelSelect),
      h("div", { class: "field" }, h("label", { for: "entity-also" }, "Add another to the chart"),
        alsoInput)),
    h("details", { class: "more-controls", open: !narrow },
      h("summary", {}, "Period, measure, dates and publications"),
      h("div", { class: "row" },
        radios("interval", "Per", [["day", "Day"], ["week", "Week"], ["month", "Month"]], state.interval),
        radios("sort", "Show", [["posts", "Posts"], ["mentions", "Mentions"], ["share", "Share of posts"]],
          state.sort),
        showSwitch(state),
        ...dateFields(state)),
      h("fieldset", { class: "pubs" }, h("legend", {}, "Publications (none ticked: all)"),
        h("div", { class: "checks" }, publications.map((p) => h("label", { class: "check" },
          h("input", {
            type: "checkbox", name: "publication", value: p.name,
            checked: state.publications.includes(p.name),
          }), ` ${p.name}`))))),
  ], async (form) => {
    const next = formState(form, state);
    const typed = nameInput.value.trim();
    next.labels = [labelSelect.value];
    next.key = state.key;
    if (typed && typed !== name) {
      // Whatever kind is selected, the service finds the topic (or entity) across every kind.
      const found = await resolveEntity(typed, labelSelect.value,
        next.as === "entities" ? "entities" : "topics");
      next.labels = [found ? found.label : labelSelect.value];
      next.key = found ? found.key : typed;
    }
    if (next.labels[0] !== state.labels[0] || next.key !== state.key || next.as !== state.as) {
      history.pushState(null, "", stateQuery(next));
      route({ focus: true });
      return;
    }
    state = next;
    setUrl(state, false);
    refresh();
  });
  // Typing in the name box waits for Enter, not for each change event.
  nameInput.addEventListener("change", (event) => event.stopPropagation());
  // Enter shows the name typed (a form of several fields has no implicit submission).
  nameInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  labelSelect.addEventListener("change", (event) => event.stopPropagation());
  view.append(form, names, alsoNames, area);
  await refresh();
}

async function didYouMean(state, name) {
  const kind = state.as === "entities" ? "entities" : "topics";
  const found = (await findEntities(name, 5, kind)).filter(
    (e) => e.label !== state.labels[0] || e.key !== state.key);
  if (!found.length) return null;
  return h("div", { class: "notice", role: "note" }, h("h2", {}, "Did you mean"),
    h("ul", { class: "suggestions" }, found.map((e) => h("li", {},
      h("a", { href: entityHref(e, state.publications, kind), "data-nav": true }, e.text),
      ` (${labelName(e.label)}, ${number.format(e.posts)} ${e.posts === 1 ? "post" : "posts"})`))));
}

const valueOf = (p, measure) => p[measure];
const shown = (value, measure) => (measure === "share" ? percent.format(value) : number.format(value));

async function timeline(body, state, name, entries, extra = []) {
  const measure = state.sort;
  const series = body.series.map((s) => {
    const posts = s.points.reduce((sum, p) => sum + p.posts, 0);
    const published = s.points.reduce((sum, p) => sum + p.published, 0);
    const mentions = s.points.reduce((sum, p) => sum + p.mentions, 0);
    return { ...s, posts, mentions, published, share: published ? posts / published : 0 };
  });
  if (!series.length || series.every((s) => s.posts === 0)) {
    say("No mentions");
    return [emptyNode("No mentions", `No post mentions ${name} as a ${labelName(state.labels[0]).toLowerCase()} ` +
      `${rangeText(state)}` + (state.publications.length ? " in the ticked publications." : ".")),
    await didYouMean(state, name)];
  }
  const axis = series[0].points.map((p) => p.date);
  const peak = Math.max(measure === "share" ? 0.0001 : 1,
    ...[body, ...extra].flatMap((b) => b.series.flatMap((s) => s.points.map((p) => valueOf(p, measure)))));
  const labels = [name, ...extra.map((b) => b.text || b.key)];
  const period = { day: "Day", week: "Week of", month: "Month of" }[state.interval];
  const periodText = (iso) => state.interval === "month"
    ? new Intl.DateTimeFormat(undefined, { month: "long", year: "numeric", timeZone: "UTC" })
      .format(new Date(iso + "T00:00:00Z"))
    : formatDate(iso);
  const pointText = (p) => `${number.format(p.posts)} of ${number.format(p.published)} posts ` +
    `(${percent.format(p.share)}), ${number.format(p.mentions)} mentions`;
  say(`${series.length} publications, ${axis.length} ${state.interval}s`);
  return [
    toolbar(h("p", { class: "sub" }, `${name}: ${MEASURES[measure]} per ${state.interval}, ` +
      `${rangeText(state)}. Every chart uses the same scale (highest: ${shown(peak, measure)}); ` +
      "publications that never mention it are shown at zero."),
    csvButton("Download CSV", timelinePath(state), entries)),
    extra.length ? legend(labels, state) : null,
    h("ul", { class: "multiples" }, series.map((s) => {
      const summary = `${s.publication}: ${number.format(s.posts)} of its ${number.format(s.published)} posts ` +
        `mention ${name} (${percent.format(s.share)})`;
      const chart = svg("svg", {
        viewBox: `0 0 ${axis.length} 100`, preserveAspectRatio: "none", role: "img",
        "aria-label": summary, class: "spark",
      }, ...[s, ...extra.map((b) => b.series.find((o) => o.publication === s.publication))]
        .flatMap((one, k, all) => (one ? one.points : []).map((p, i) => {
          const width = 0.76 / all.length;
          const height = (100 * valueOf(p, measure)) / peak;
          return svg("rect", { x: i + 0.12 + k * width, y: 100 - height, width, height, class: `e${k}` },
            svg("title", {}, `${k ? labels[k] + ", " : ""}${period} ${periodText(p.date)}: ${pointText(p)}`));
        })));
      return h("li", { "data-publication": s.publication },
        h("div", { class: "multiple-head" }, h("strong", {}, s.publication),
          h("span", {}, s.posts ? h("a", {
            href: postsHref({ label: body.label, key: body.key }, [s.publication], state.since, state.until, state.as),
            "data-nav": true, class: "stories",
          }, numberNode(s.posts, "total"), s.posts === 1 ? " post" : " posts")
            : h("span", {}, numberNode(s.posts, "total"), " posts"),
          ` of ${number.format(s.published)} · `,
          h("data", { value: (s.share * 100).toFixed(1), class: "share" }, percent.format(s.share)))),
        chart,
        h("div", { class: "axis", "aria-hidden": "true" },
          h("span", {}, periodText(axis[0])), h("span", {}, periodText(axis[axis.length - 1]))));
    })),
    numbersTable(body, series, axis, state, period),
  ];
}

function numbersTable(body, series, axis, state, period) {
  const end = (start) => {
    const day = new Date(start + "T00:00:00Z");
    if (state.interval === "week") day.setUTCDate(day.getUTCDate() + 6);
    if (state.interval === "month") day.setUTCMonth(day.getUTCMonth() + 1, 0);
    return day.toISOString().slice(0, 10);
  };
  return h("details", { class: "panel" }, h("summary", {}, "The numbers as a table"),
    h("div", { class: "scroll" }, h("table", { class: "timeline" },
      h("caption", { class: "visually-hidden" },
        `Posts that mention it, of the posts published, per ${state.interval}`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, period),
        series.map((s) => h("th", { scope: "col", class: "num" }, s.publication)))),
      h("tbody", {}, axis.map((day, i) => h("tr", {}, h("th", { scope: "row" }, dateNode(day)),
        series.map((s) => {
          const p = s.points[i];
          return h("td", { class: "num" }, p.posts ? h("a", {
            href: postsHref({ label: body.label, key: body.key }, [s.publication], day, end(day), state.as),
            "data-nav": true, class: "stories",
          }, numberNode(p.posts, "posts")) : numberNode(p.posts, "posts"),
          h("span", { class: "of" }, ` of ${number.format(p.published)} · `),
          h("data", { value: (p.share * 100).toFixed(1), class: "share" }, percent.format(p.share)));
        })))))));
}

/** Which colour is which entity, each with a way to take it off the chart. */
function legend(labels, state) {
  return h("ul", { class: "legend" }, labels.map((text, k) => h("li", { "data-entity": k },
    h("span", { class: `swatch e${k}`, "aria-hidden": "true" }), ` ${text}`,
    k ? h("a", {
      href: stateQuery({ ...state, also: state.also.filter((_, j) => j !== k - 1) }),
      "data-nav": true, class: "remove", "aria-label": `Take ${text} off the chart`,
    }, " ×") : null)));
}

/** The name of the state's topic, from its kind's top topics (its key when not among them). */
async function topicName(state) {
  const known = await topList(state, params([["label", state.labels[0]], ["limit", 200]]));
  const found = known.find((t) => t.key === state.key && t.label === state.labels[0]);
  return found ? found.text : "";
}
