// The JSON API (/v1) and its errors.

import { KEY_STORE } from "./common.js";

export class Problem extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind; // "down" | "api" | "key"
  }
}

export async function api(path, params) {
  const query = params && params.toString();
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers["X-API-Key"] = key;
  let response;
  try {
    response = await fetch(`/v1/${path}${query ? `?${query}` : ""}`, { headers });
  } catch {
    throw new Problem("down", "The entityflow service is not answering. Is it running?");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401) {
    const wrong = Boolean(key);
    sessionStorage.removeItem(KEY_STORE);
    throw new Problem("key", wrong ? "That API key was not accepted. Try another." : "");
  }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw new Problem(response.status >= 500 ? "down" : "api",
      `The service answered ${response.status}: ${message}`);
  }
  return body;
}

export function params(entries) {
  const query = new URLSearchParams();
  for (const [name, value] of entries) {
    if (Array.isArray(value)) value.forEach((v) => query.append(name, v));
    else if (value !== "" && value !== null && value !== undefined) query.append(name, value);
  }
  return query;
}
