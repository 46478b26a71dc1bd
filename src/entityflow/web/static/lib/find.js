// Finding a topic or an entity by typed text: the service applies the key rule and matches
// across every kind (GET /v1/search, kind=topics unless the page shows raw entities);
// suggestions appear while typing.

import { h, labelName, number } from "./common.js";
import { api, params } from "./api.js";
import { readState } from "./state.js";

/** What the page shows now, as the API's kind: topics unless `as=entities`. */
export function kindNow() {
  return readState(location.search).as === "entities" ? "entities" : "topics";
}

/** The service's answer for typed text: `key`, the key its rule makes of the text (the page
 * never makes keys itself), and `entities`, the matches (topics or raw entities). */
function search(text, limit = 10, kind = kindNow()) {
  return api("search", params([["q", text], ["limit", limit], ["kind", kind]]));
}

export async function findEntities(text, limit = 10, kind = kindNow()) {
  if (!text.trim()) return [];
  return (await search(text, limit, kind)).entities;
}

/** The topic or entity typed text means: an exact key first (of `label` if there is one),
 * else the best partial match of any kind; null when nothing matches. */
export async function resolveEntity(text, label, kind = kindNow()) {
  if (!text.trim()) return null;
  const { key, entities: found } = await search(text, 10, kind);
  const exact = found.filter((e) => e.key === key);
  if (exact.length) return exact.find((e) => e.label === label) || exact[0];
  return found[0] || null;
}

/** Fills `list` (a datalist) with matches for what is typed in `input`, a moment after typing. */
export function suggest(input, list) {
  let timer = 0;
  let asked = "";
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const text = input.value;
      const kind = kindNow();
      if (`${kind}:${text}` === asked || text.trim().length < 2) return;
      asked = `${kind}:${text}`;
      let found = [];
      try {
        found = await findEntities(text, 10, kind);
      } catch {
        return; // Suggestions are a help: the form still works without them.
      }
      if (input.value !== text) return;
      list.replaceChildren(...found.map((e) => h("option", {
        value: e.text, label: `${labelName(e.label)} · ${number.format(e.posts)} posts`,
      })));
    }, 200);
  });
}
