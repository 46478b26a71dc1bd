// Labels, number and date formats, and small DOM helpers shared by every view.

export const LABELS = [
  ["PERSON", "People"],
  ["ORG", "Organisations"],
  ["GPE", "Countries, cities, states"],
  ["NORP", "Nationalities, religious and political groups"],
  ["LOC", "Other places"],
  ["FAC", "Buildings, airports, roads"],
  ["EVENT", "Events"],
  ["PRODUCT", "Products"],
  ["WORK_OF_ART", "Works of art"],
  ["LAW", "Laws"],
  ["LANGUAGE", "Languages"],
];
const SHORT = {
  PERSON: "Person", ORG: "Organisation", GPE: "Place", NORP: "Group", LOC: "Location",
  FAC: "Facility", EVENT: "Event", PRODUCT: "Product", WORK_OF_ART: "Work of art",
  LAW: "Law", LANGUAGE: "Language",
};
export const KNOWN_LABELS = new Set(LABELS.map(([code]) => code));
export const VIEWS = ["overview", "publication", "compare", "entity", "posts"];
export const TITLES = {
  overview: "Overview", publication: "Publication", compare: "Compare", entity: "Entity",
  posts: "Stories",
};
export const KEY_STORE = "entityflow.apiKey";
// The API's largest page (the server writes it into the page): the most a "How many" asks,
// and how many entities per publication Compare reads.
export const MAX_LIMIT = Number(document.body.dataset.maxRows);

export const number = new Intl.NumberFormat();
export const percent = new Intl.NumberFormat(undefined, {
  style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1,
});
export const points = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 1, maximumFractionDigits: 1,
});
const longDate = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" });

// ---------------------------------------------------------------- small helpers

export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    // Through the CSSOM: the page's CSP allows no inline style attributes.
    else if (name === "style") node.style.cssText = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

export const isDate = (value) => /^\d{4}-\d{2}-\d{2}$/.test(value || "");
export const formatDate = (iso) => longDate.format(new Date(iso + "T00:00:00Z"));
export const dateNode = (iso) => (iso ? h("time", { datetime: iso }, formatDate(iso)) : "—");
export const numberNode = (value, cls) => h("data", { value, class: cls }, number.format(value));
export const percentNode = (share) => h("data", { value: (share * 100).toFixed(1), class: "share" },
  percent.format(share));
export const pct = (share) => (share * 100).toFixed(1);
export const entityId = (e) => `${e.label}|${e.key}`;
export const labelName = (code) => SHORT[code] || code;

export function say(message) {
  document.getElementById("status").textContent = message;
}

export function slug(text) {
  return text.normalize("NFKD").replace(/[^\w-]+/g, "-").replace(/^-+|-+$/g, "").toLowerCase();
}
