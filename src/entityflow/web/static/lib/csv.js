// CSV of whatever is on screen, downloaded in the browser.

import { h, say } from "./common.js";

// A text cell that a spreadsheet would run as a formula gets a leading "'" (OWASP "CSV
// Injection"): the same rule as the API's CSV (src/entityflow/csvexport.py).
const FORMULA_START = /^[=+\-@\t\r\uFF1D\uFF0B\uFF0D\uFF20]/;

function csvCell(value) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" && FORMULA_START.test(value) ? `'${value}` : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function csvText(columns, rows) {
  return [columns, ...rows].map((row) => row.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

function downloadCsv(filename, columns, rows) {
  const blob = new Blob([csvText(columns, rows)], { type: "text/csv;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  say(`Downloaded ${filename}`);
}

export function csvButton(text, filename, columns, rows) {
  return h("button", {
    type: "button", class: "csv", onclick: () => downloadCsv(filename, columns, rows),
  }, text);
}
