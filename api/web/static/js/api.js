// JSON calls to the API with the session cookie; writes carry the session's CSRF token.
import { boot } from "./boot.js";

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

async function check(response) {
  if (response.ok) return response.status === 204 ? null : response.json();
  let detail = response.statusText;
  try {
    const body = await response.json();
    detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    // not JSON: keep the status text
  }
  if (response.status === 401) window.location.assign("/signin");
  throw new ApiError(response.status, detail);
}

/** GET path with query params (null/undefined left out); resolve to the parsed JSON. */
export async function getJson(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) query.set(k, v);
  const qs = query.toString();
  const response = await fetch(qs ? `${path}?${qs}` : path, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  return check(response);
}

/** POST a JSON body to path with the CSRF token; resolve to the parsed JSON (null for 204). */
export async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": boot.csrf || "" },
    body: JSON.stringify(body),
  });
  return check(response);
}
