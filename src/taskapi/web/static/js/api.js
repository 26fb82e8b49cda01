// The one way the app talks to the API.
//
// - The access token lives in this module's memory only; it is gone on reload.
// - The refresh token is an HttpOnly cookie the server sets when a request carries
//   `X-Token-Transport: cookie`; JavaScript never sees it. Refresh and logout send the same
//   header, which a cross-site form cannot, so the cookie alone can do nothing.
// - A 401 triggers one refresh and one retry. Refreshes are serialised across tabs with the
//   Web Locks API, so two tabs never present the same refresh token (which the server would
//   treat as theft and end the session).
// - 503 and network failures show a banner and retry with backoff; 429 shows how long to
//   wait (Retry-After) and retries reads once the wait is over.

import { banner, hideBanner } from "./notices.js";

export const API = "/api/v1";
const TOKEN_TRANSPORT = { "X-Token-Transport": "cookie" };
const MAX_BACKOFF_SECONDS = 30;
const MAX_RATE_LIMIT_RETRIES = 2;

export class ApiError extends Error {
  constructor(status, problem, retryAfter = null) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || null;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

let accessToken = null;
let currentUser = null;
let refreshing = null;
const sessionListeners = new Set();
const channel = "BroadcastChannel" in window ? new BroadcastChannel("taskapi-session") : null;

export function signedIn() {
  return accessToken !== null;
}

export function user() {
  return currentUser;
}

export function setUser(next) {
  currentUser = next;
  emit("user");
}

/** fn(reason) runs on "signed-in", "signed-out", "expired", "elsewhere" and "user". */
export function onSessionChange(fn) {
  sessionListeners.add(fn);
  return () => sessionListeners.delete(fn);
}

function emit(reason) {
  for (const fn of sessionListeners) fn(reason);
}

if (channel) {
  channel.addEventListener("message", (event) => {
    if (event.data === "signed-out" && accessToken !== null) {
      forget();
      emit("elsewhere");
    } else if (event.data === "signed-in" && accessToken === null) {
      emit("elsewhere-signed-in");
    }
  });
}

function forget() {
  accessToken = null;
  currentUser = null;
}

/** Keep the tokens of a token response (the refresh token stays in its cookie). */
export function acceptTokens(tokens) {
  const wasSignedIn = accessToken !== null;
  accessToken = tokens.access_token;
  currentUser = tokens.user;
  if (!wasSignedIn) {
    channel?.postMessage("signed-in");
    emit("signed-in");
  } else {
    emit("user");
  }
}

/** End the session here and in every other tab. */
export function endSession(reason = "signed-out") {
  const had = accessToken !== null;
  forget();
  channel?.postMessage("signed-out");
  if (had || reason !== "signed-out") emit(reason);
}

function sleep(seconds) {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

function retryAfterSeconds(response) {
  const value = response.headers.get("Retry-After");
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(1, Math.ceil(seconds));
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(1, Math.ceil((date - Date.now()) / 1000));
}

async function problemOf(response) {
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      // fall through to a generic problem
    }
  }
  return { status: response.status, title: response.statusText, detail: response.statusText };
}

let outageAttempts = 0;

/** Wait while the service is unavailable, with a banner and a "Retry now" button. */
async function waitForService(response) {
  outageAttempts += 1;
  const seconds =
    (response && retryAfterSeconds(response)) ||
    Math.min(MAX_BACKOFF_SECONDS, 2 ** Math.min(outageAttempts, 5));
  const message = response
    ? { before: "The service is unavailable right now. Retrying in ", after: " s." }
    : { before: "Can't reach the server. Retrying in ", after: " s." };
  await banner({ kind: "error", message, seconds, button: "Retry now" });
}

function serviceAnswered() {
  if (outageAttempts > 0) {
    outageAttempts = 0;
    hideBanner();
  }
}

/** fetch, riding out outages: resolves with the first answer that is not a 503. */
async function fetchThroughOutages(url, init) {
  for (;;) {
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", ...init });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      await waitForService(null);
      continue;
    }
    if (response.status === 503) {
      await waitForService(response);
      continue;
    }
    serviceAnswered();
    return response;
  }
}

async function refreshOnce() {
  for (;;) {
    const response = await fetchThroughOutages(`${API}/auth/refresh`, {
      method: "POST",
      headers: { Accept: "application/json", ...TOKEN_TRANSPORT },
    });
    if (response.status === 429) {
      await slowDown(retryAfterSeconds(response) || 5);
      continue;
    }
    if (!response.ok) return false;
    acceptTokens(await response.json());
    return true;
  }
}

/** The "slow down" banner; resolves when the wait is over. */
function slowDown(seconds) {
  return banner({
    kind: "warn",
    message: { before: "Slow down: too many requests. You can retry in ", after: " s." },
    seconds,
  }).then(hideBanner);
}

/** A new access token from the refresh cookie; false when there is no live session. */
export function refreshSession() {
  if (!refreshing) {
    const run = () => refreshOnce();
    const locked = navigator.locks
      ? navigator.locks.request("taskapi-refresh", run)
      : run();
    refreshing = locked.finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

function queryString(query) {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

/**
 * api("PATCH", "/tasks/1", {body, headers, query, auth}). Resolves with the parsed body (or
 * null for 204), throws ApiError with the problem+json of a refusal.
 */
export async function api(method, path, options = {}) {
  const { body, query, headers = {}, auth = true, tokenTransport = false } = options;
  const url = `${API}${path}${queryString(query)}`;
  let refreshed = false;
  let rateLimitRetries = 0;
  for (;;) {
    const requestHeaders = { Accept: "application/json, application/problem+json", ...headers };
    if (tokenTransport) Object.assign(requestHeaders, TOKEN_TRANSPORT);
    if (body !== undefined) requestHeaders["Content-Type"] = "application/json";
    if (auth && accessToken) requestHeaders.Authorization = `Bearer ${accessToken}`;
    const response = await fetchThroughOutages(url, {
      method,
      headers: requestHeaders,
      body: body === undefined ? undefined : JSON.stringify(body),
    });

    if (response.ok) {
      if (response.status === 204) return null;
      const type = response.headers.get("Content-Type") || "";
      return type.includes("json") ? response.json() : response.text();
    }

    if (response.status === 401 && auth && !refreshed) {
      refreshed = true;
      if (await refreshSession()) continue;
      endSession("expired");
    }

    const retryAfter = retryAfterSeconds(response);
    const problem = await problemOf(response);
    if (response.status === 429) {
      const wait = slowDown(retryAfter || 5);
      if (method === "GET" && rateLimitRetries < MAX_RATE_LIMIT_RETRIES) {
        rateLimitRetries += 1;
        await wait;
        continue;
      }
    }
    throw new ApiError(response.status, problem, retryAfter);
  }
}

/** What the running server offers, read from its OpenAPI document. */
let capabilities = null;

export async function loadCapabilities() {
  if (capabilities) return capabilities;
  const found = {
    sessions: false,
    tokens: false,
    scopes: [],
  };
  try {
    const response = await fetchThroughOutages("/openapi.json", { headers: { Accept: "application/json" } });
    if (response.ok) {
      const doc = await response.json();
      const paths = Object.keys(doc.paths || {}).map((path) => path.replace(/\{[^}]+\}/g, "{}"));
      const has = (path) => paths.includes(`${API}${path}`);
      found.sessions = has("/auth/sessions");
      found.tokens = has("/auth/tokens");
      found.scopes = scopesOf(doc);
    }
  } catch {
    // Without the document the app offers the core screens only.
  }
  capabilities = found;
  return found;
}

function scopesOf(doc) {
  const schemas = doc.components?.schemas || {};
  for (const [name, schema] of Object.entries(schemas)) {
    if (/scope/i.test(name) && Array.isArray(schema.enum)) return schema.enum;
  }
  const create = schemas.TokenCreate || schemas.PersonalTokenCreate || {};
  const items = create.properties?.scopes?.items;
  return Array.isArray(items?.enum) ? items.enum : [];
}

export function caps() {
  return capabilities || {};
}
