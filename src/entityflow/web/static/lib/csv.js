// CSV of whatever is on screen, downloaded in the browser.

import { h, say } from "./common.js";

function csvText(columns, rows) {
  const cell = (value) => {
    const text = value === null || value === undefined ? "" : String(value);
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  return [columns, ...rows].map((row) => row.map(cell).join(",")).join("\r\n") + "\r\n";
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
