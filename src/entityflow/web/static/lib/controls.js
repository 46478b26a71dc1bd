// Controls and pieces the views share: filters, headings, bars, wording.

import { LABELS, MAX_LIMIT, h, isDate, formatDate, numberNode, labelName } from "./common.js";
import { entityHref, postsHref } from "./state.js";

/** The label filter; folded away on narrow screens, where it would fill the first view. */
export function labelFieldset(selected) {
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

/** From and To. Typing a date waits for Enter or for leaving the field: a date typed digit
 * by digit is not a new request (and a new history entry) at every keystroke. */
export function dateFields(state) {
  const field = (id, text, value) => {
    const input = h("input", { id, name: id, type: "date", value, "aria-describedby": "date-problem" });
    input.dataset.applied = value;
    input.addEventListener("change", (event) => event.stopPropagation());
    // Enter applies the dates (a form of several fields has no implicit submission).
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        input.form.requestSubmit();
      }
    });
    // Leaving the dates applies them; moving from one date to the other does not yet.
    input.addEventListener("blur", (event) => {
      if (event.relatedTarget && event.relatedTarget.type === "date") return;
      const dates = [...input.form.querySelectorAll("input[type=date]")];
      if (dates.some((d) => d.value !== d.dataset.applied)) input.form.requestSubmit();
    });
    return h("div", { class: "field" }, h("label", { for: id }, text), input);
  };
  return [
    field("since", "From", state.since), field("until", "To", state.until),
    h("p", { id: "date-problem", class: "error date-problem", role: "alert", hidden: true }),
  ];
}

/** Whether the form's dates make a range; if not, says why next to them. */
function datesOk(form) {
  const since = form.querySelector("[name=since]");
  const until = form.querySelector("[name=until]");
  const problem = form.querySelector(".date-problem");
  if (!since || !until || !problem) return true;
  const bad = since.value && until.value && since.value > until.value;
  problem.hidden = !bad;
  problem.textContent = bad
    ? `The start date (${formatDate(since.value)}) is after the end date (${formatDate(until.value)}).`
    : "";
  if (!bad) {
    since.dataset.applied = since.value;
    until.dataset.applied = until.value;
  }
  return !bad;
}

export function limitField(value) {
  return h("div", { class: "field" }, h("label", { for: "limit" }, "How many"),
    h("input", {
      id: "limit", name: "limit", type: "number", min: 1, max: MAX_LIMIT, step: 1,
      value, inputmode: "numeric",
    }));
}

export function radios(name, legend, choices, value) {
  return h("fieldset", { class: "radios" }, h("legend", {}, legend),
    choices.map(([choice, text]) => h("label", { class: "check" },
      h("input", { type: "radio", name, value: choice, checked: choice === value }), ` ${text}`)));
}

/** Reads a controls form back into state; invalid numbers fall back to the old value. */
export function formState(form, state) {
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
  if (data.has("as")) next.as = data.get("as");
  return next;
}

export function controlsForm(children, onchange) {
  const form = h("form", { class: "controls", "aria-label": "Filters" }, children);
  form.addEventListener("change", () => {
    if (datesOk(form)) onchange(form);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (datesOk(form)) onchange(form);
  });
  return form;
}

export function heading(title, subtitle) {
  return h("header", { class: "view-head" }, h("h1", {}, title),
    subtitle ? h("p", { class: "sub" }, subtitle) : null);
}

export function toolbar(...buttons) {
  return h("div", { class: "toolbar" }, buttons);
}

/** Horizontal bars: one row per entity or topic, the bar drawn in CSS, both counts in words;
 * the ranking measure is the bold one. The posts count opens the posts behind it: those that
 * mention the entity, or for a topic those whose topics include it (through any alias). */
export function bars(entities, measure, caption, publications, as, aliasesNode, range) {
  const max = Math.max(1, ...entities.map((e) => e[measure]));
  const lead = (name) => (name === measure ? `${name} lead` : name);
  return h("ol", { class: "bars", "aria-label": caption },
    entities.map((e) => h("li", { "data-label": e.label, "data-key": e.key },
      h("span", { class: "who" },
        h("a", { href: entityHref(e, publications, as), "data-nav": true, class: "name" }, e.text),
        h("span", { class: "chip" }, labelName(e.label))),
      h("span", { class: "bar", "aria-hidden": "true" },
        h("span", { style: `width:${(100 * e[measure]) / max}%` })),
      h("span", { class: "value" },
        h("a", {
          href: postsHref(e, publications, range && range.since, range && range.until, as),
          "data-nav": true, class: "stories", title: `The posts that mention ${e.text}`,
        }, numberNode(e.posts, lead("posts")), e.posts === 1 ? " post" : " posts"),
        " · ",
        numberNode(e.mentions, lead("mentions")), e.mentions === 1 ? " mention" : " mentions"),
      aliasesNode ? aliasesNode(e) : null)));
}

export function rangeText(state) {
  if (state.since && state.until) return `from ${formatDate(state.since)} to ${formatDate(state.until)}`;
  if (state.since) return `from ${formatDate(state.since)}`;
  if (state.until) return `up to ${formatDate(state.until)}`;
  return "over all dates";
}

export function labelsText(labels) {
  return labels.length ? labels.map(labelName).join(", ") : "All kinds";
}
