// Finding an entity by typed text: the service applies the key rule and matches across
// every kind (GET /v1/search); suggestions appear while typing.

import { h, labelName, number } from "./common.js";
import { api, params } from "./api.js";

/** The service's answer for typed text: `key`, the key its rule makes of the text (the page
 * never makes keys itself), and `entities`, the matches. */
function search(text, limit = 10) {
  return api("search", params([["q", text], ["limit", limit]]));
}

export async function findEntities(text, limit = 10) {
  if (!text.trim()) return [];
  return (await search(text, limit)).entities;
}

/** The entity typed text means: an exact key first (of `label` if there is one), else the
 * best partial match of any kind; null when nothing matches. */
export async function resolveEntity(text, label) {
  if (!text.trim()) return null;
  const { key, entities: found } = await search(text);
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
      if (text === asked || text.trim().length < 2) return;
      asked = text;
      let found = [];
      try {
        found = await findEntities(text);
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
