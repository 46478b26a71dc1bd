// Stories: the posts behind a count, newest first, each linking to its article. On topics
// (the default) the posts whose topics include it, through any of its forms.

import { number, h, dateNode, labelName, say } from "../lib/common.js";
import { csvButton } from "../lib/csv.js";
import { api, params } from "../lib/api.js";
import { setUrl, entityHref } from "../lib/state.js";
import { emptyNode, setTitle } from "../lib/frame.js";
import { heading, toolbar, rangeText } from "../lib/controls.js";

const PAGE = 20;

export async function buildPosts(view, state) {
  setUrl(state, true);
  if (!state.key || !state.labels.length) {
    view.append(heading("Stories"), emptyNode(state.as === "entities" ? "Pick an entity" : "Pick a topic",
      "Open the stories behind a count from any view: every number of posts links here."));
    return;
  }
  const label = state.labels[0];
  const kind = state.as === "entities" ? "entities" : "topics";
  const entries = [["label", label], ["key", state.key], ["kind", kind],
    ["publication", state.publications], ["since", state.since], ["until", state.until]];
  const first = await api("posts", params([...entries, ["limit", PAGE]]));
  const name = first.text || state.key;
  setTitle(name);
  const where = state.publications.length ? state.publications.join(", ") : "all publications";
  view.append(h("header", { class: "view-head" },
    h("h1", {}, `Posts that mention ${name}`),
    h("p", { class: "sub" }, `${labelName(label)} ${kind === "topics" ? "(every form of it)" : "(as spaCy found it)"} · ${where} · ${rangeText(state)} · newest first. `,
      h("a", { href: entityHref({ label, key: first.key }, state.publications, kind), "data-nav": true },
        `${name} over time`))));
  if (!first.posts.length) {
    view.append(emptyNode("No posts", `No post mentions ${name} ${rangeText(state)}` +
      (state.publications.length ? ` in ${where}.` : ".")));
    return;
  }
  const list = h("ol", { class: "story-list" });
  const more = h("button", { type: "button", class: "more" }, "Show more");
  let next = first.next;
  const add = (posts) => {
    list.append(...posts.map(storyItem));
    more.hidden = !next;
    say(`${list.children.length} posts shown`);
  };
  more.addEventListener("click", async () => {
    more.disabled = true;
    let page;
    try {
      page = await api("posts", params([...entries, ["limit", PAGE], ["cursor", next]]));
    } catch (error) {
      say(`More posts could not be loaded: ${error.message}`);
      return;
    } finally {
      more.disabled = false;
    }
    next = page.next;
    add(page.posts);
    list.children[list.children.length - page.posts.length]?.querySelector("a, span")?.focus();
  });
  add(first.posts);
  view.append(toolbar(h("p", { class: "sub" }, "Each title opens the article where it was published."),
    csvButton("Download CSV", "posts", [...entries, ["limit", 1000]])), list, more);
}

function storyItem(post) {
  const title = post.title || "(untitled)";
  return h("li", { "data-id": post.id },
    post.url ? h("a", { href: post.url, class: "story", rel: "noopener noreferrer", target: "_blank" }, title)
      : h("span", { class: "story", tabindex: "-1" }, title),
    h("span", { class: "meta" }, `${post.publication} · `, dateNode(post.date),
      ` · mentioned ${number.format(post.count)} ${post.count === 1 ? "time" : "times"}`));
}
