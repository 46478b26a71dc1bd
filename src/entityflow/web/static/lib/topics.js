// Topics or entities: the views read topics by default (one row per person, place and
// organisation, with its aliases) and raw entities "as spaCy found them" on request.

import { h } from "./common.js";
import { api } from "./api.js";
import { radios } from "./controls.js";

export const SHOWS = [["topics", "Topics"], ["entities", "Entities as spaCy found them"]];

/** A top list in the state's mode; topic rows get `text` (their name) as entities have. */
export async function topList(state, query) {
  if (state.as === "entities") return (await api("entities", query)).entities;
  return (await api("topics", query)).topics.map((t) => ({ ...t, text: t.name }));
}

export function timelinePath(state) {
  return state.as === "entities" ? "entities/timeline" : "topics/timeline";
}

export function showSwitch(state) {
  return radios("as", "Show", SHOWS, state.as);
}

/** What a topic gathers, on hover (title) and on expand (details); nothing for an entity. */
export function aliasesNode(row) {
  if (!row.aliases || row.aliases.length < 2) return null;
  const text = row.aliases.map((a) => `${a.text} (${a.label}): ${a.mentions}`).join("; ");
  return h("details", { class: "aliases", title: `Counted together: ${text}` },
    h("summary", {}, `${row.aliases.length} forms`),
    h("ul", {}, row.aliases.map((a) => h("li", { "data-label": a.label, "data-key": a.key },
      `${a.text} `, h("span", { class: "chip" }, a.label), ` ${a.mentions}`))));
}

export const TOPIC_COLUMNS = ["name", "label", "key", "posts", "mentions", "aliases"];

/** CSV columns and rows of a list in the state's mode. */
export function listCsv(state, rows, entityColumns, entityRows) {
  if (state.as === "entities") return [entityColumns, entityRows(rows)];
  return [TOPIC_COLUMNS, rows.map((t) => [t.name, t.label, t.key, t.posts, t.mentions,
    t.aliases.map((a) => `${a.text} (${a.label}:${a.key}) ${a.mentions}`).join("; ")])];
}
