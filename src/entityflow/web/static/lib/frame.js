// The page frame: routing between views, errors, notices, reloading results.

import { TITLES, KEY_STORE, h } from "./common.js";
import { Problem } from "./api.js";
import { readState } from "./state.js";

/** The view builders by name; app.js fills it in. */
export const BUILDERS = {};

let routeToken = 0;

export async function route({ focus = false } = {}) {
  const state = readState(location.search);
  const token = ++routeToken;
  for (const link of document.querySelectorAll("nav a[data-view]")) {
    if (link.dataset.view === state.view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[state.view]} · entityflow`;
  const root = document.getElementById("view");
  root.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  root.setAttribute("aria-busy", "true");
  const view = h("div", { class: `view view-${state.view}` });
  try {
    await BUILDERS[state.view](view, state);
    if (token !== routeToken) return;
    root.replaceChildren(view);
  } catch (error) {
    if (token !== routeToken) return;
    root.replaceChildren(problemNode(error, () => route({ focus: true })));
    document.getElementById("api-key")?.focus();
  } finally {
    if (token === routeToken) root.removeAttribute("aria-busy");
  }
  if (focus) {
    const target = root.querySelector("h1, [data-focus]") || document.getElementById("main");
    target.setAttribute("tabindex", "-1");
    target.focus();
  }
}

function problemNode(error, retry) {
  if (error instanceof Problem && error.kind === "key") return keyForm(error.message, retry);
  const message = error instanceof Problem ? error.message : `Something went wrong: ${error}`;
  const title = error instanceof Problem && error.kind === "down"
    ? "Cannot reach the service" : "The request failed";
  return h("div", { class: "notice error", role: "alert", "data-focus": true },
    h("h2", {}, title), h("p", {}, message),
    h("button", { type: "button", onclick: retry }, "Try again"));
}

function keyForm(message, retry) {
  const input = h("input", {
    id: "api-key", name: "api-key", type: "password", autocomplete: "off", required: true,
    "aria-describedby": "api-key-help",
  });
  const form = h("form", {
    class: "notice key", "aria-labelledby": "api-key-title",
    onsubmit: (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_STORE, input.value.trim());
      retry();
    },
  },
  h("h1", { id: "api-key-title" }, "This service needs an API key to read"),
  h("p", { id: "api-key-help" },
    "Enter one of the service's API keys (ENTITYFLOW_API_KEYS). It is kept for this tab only ",
    "and sent only to this service."),
  message ? h("p", { class: "error", role: "alert" }, message) : null,
  h("label", { for: "api-key" }, "API key"), input,
  h("button", { type: "submit" }, "Continue"));
  return form;
}

export function emptyNode(title, text) {
  return h("div", { class: "notice empty", role: "status" }, h("h2", {}, title), h("p", {}, text));
}

export const NO_POSTS = () => h("div", { class: "notice empty", role: "status" },
  h("h2", {}, "No posts yet"),
  h("p", {}, "Nothing has been counted so far. Send posts to ", h("code", {}, "POST /v1/posts"),
    " or replay a CSV with ", h("code", {}, "entityflow replay"), ", then reload this page."));

/** Results that reload when the controls change; errors stay inside the results area. */
export function resultsArea(load) {
  // Not a live region: the status line says what changed, rather than reading every row.
  const area = h("section", { class: "results", "aria-label": "Results" });
  let token = 0;
  const refresh = async () => {
    const mine = ++token;
    area.setAttribute("aria-busy", "true");
    try {
      const nodes = await load();
      if (mine === token) area.replaceChildren(...nodes.filter(Boolean));
    } catch (error) {
      if (mine === token) {
        area.replaceChildren(problemNode(error, refresh));
        document.getElementById("api-key")?.focus();
      }
    } finally {
      if (mine === token) area.removeAttribute("aria-busy");
    }
  };
  return { area, refresh };
}
