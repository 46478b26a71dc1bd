// CSV downloads: the API's own CSV (byte-order mark, the filters as columns, a filename that
// names them), saved as it comes, so the page's file and a script's are the same bytes.

import { KEY_STORE, h, say } from "./common.js";
import { params } from "./api.js";

async function downloadCsv(path, entries) {
  const query = params([...entries, ["format", "csv"]]).toString();
  const headers = { Accept: "text/csv" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers["X-API-Key"] = key;
  let response;
  try {
    response = await fetch(`/v1/${path}?${query}`, { headers });
  } catch {
    say("The CSV could not be downloaded: the service is not answering.");
    return;
  }
  if (!response.ok) {
    say(`The CSV could not be downloaded: the service answered ${response.status}.`);
    return;
  }
  const disposition = response.headers.get("Content-Disposition") || "";
  const filename = (/filename="([^"]+)"/.exec(disposition) || [])[1] || "entityflow.csv";
  save(await response.blob(), filename);
}

/** Hands `blob` to the browser as a download named `filename`. */
function save(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  say(`Downloaded ${filename}`);
}

/** A button that downloads GET /v1/PATH?ENTRIES as CSV. */
export function csvButton(text, path, entries) {
  return h("button", {
    type: "button", class: "csv", onclick: () => downloadCsv(path, entries),
  }, text);
}

// A text cell that a spreadsheet would run as a formula gets a leading "'" (OWASP "CSV
// Injection"): the same rule as the API's CSV (src/entityflow/api/csvout.py).
const FORMULA_START = /^[=+\-@\t\r\uFF1D\uFF0B\uFF0D\uFF20]/;

function csvCell(value) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" && FORMULA_START.test(value) ? `'${value}` : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** A table made here as CSV (the publications list), in the API's form:
 * a byte-order mark, CRLF line ends, no cell that starts a formula. */
function localCsvButton(text, filename, columns, rows) {
  const onclick = () => {
    const lines = [columns, ...rows].map((row) => row.map(csvCell).join(","));
    const body = "\ufeff" + lines.join("\r\n") + "\r\n";
    save(new Blob([body], { type: "text/csv;charset=utf-8" }), filename);
  };
  return h("button", { type: "button", class: "csv", onclick }, text);
}

/** The publications list as CSV, made here: the API has no CSV of it. */
export function publicationsCsvButton(text, publications) {
  return localCsvButton(text, "entityflow-publications.csv", ["name", "posts", "first_date", "last_date"],
    publications.map((p) => [p.name, p.posts, p.first_date, p.last_date]));
}
