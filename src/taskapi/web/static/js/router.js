// History-API routing: every screen has a real URL (the server answers the app shell for
// all of them), links are ordinary <a href>, and the back button works.

import { ApiError, signedIn } from "./api.js";
import { h } from "./dom.js";

const routes = [];
const hooks = { onError: null, afterRender: null };
let renderCount = 0;
let pendingState = null;

/** route("/tasks/:id", view, {public: true, guestOnly: true}) */
export function route(pattern, view, options = {}) {
  const names = [];
  const source = pattern.replace(/:([a-z]+)/g, (_, name) => {
    names.push(name);
    return "([^/]+)";
  });
  routes.push({ regex: new RegExp(`^${source}/?$`), names, view, ...options });
}

export function setHooks(next) {
  Object.assign(hooks, next);
}

/** Go to a path inside the app. `state` is handed to the next view (not kept in history). */
export function navigate(path, { replace = false, state = null } = {}) {
  pendingState = state;
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  return render();
}

/** Change the query string of the current screen without rendering it again. */
export function replaceQuery(params) {
  const text = params.toString();
  history.replaceState(null, "", `${location.pathname}${text ? `?${text}` : ""}`);
}

function match(pathname) {
  for (const candidate of routes) {
    const found = candidate.regex.exec(pathname);
    if (found) {
      const params = {};
      candidate.names.forEach((name, index) => {
        params[name] = decodeURIComponent(found[index + 1]);
      });
      return { route: candidate, params };
    }
  }
  return null;
}

export function setTitle(title) {
  document.title = title ? `${title} · taskapi` : "taskapi";
}

export function currentPath() {
  return `${location.pathname}${location.search}`;
}

/** Draw the screen for the current URL. */
export async function render() {
  renderCount += 1;
  const ticket = renderCount;
  const main = document.getElementById("main");
  const state = pendingState;
  pendingState = null;
  const found = match(location.pathname);
  if (!found) {
    show(main, notFound(), ticket);
    return;
  }
  const { route: current, params } = found;
  if (!current.public && !signedIn()) {
    const next = encodeURIComponent(currentPath());
    await navigate(`/signin?next=${next}`, { replace: true });
    return;
  }
  if (current.guestOnly && signedIn()) {
    await navigate("/tasks", { replace: true });
    return;
  }
  main.setAttribute("aria-busy", "true");
  const context = {
    params,
    query: new URLSearchParams(location.search),
    state,
    stillCurrent: () => ticket === renderCount,
  };
  let content;
  try {
    content = await current.view(context);
  } catch (error) {
    if (!(error instanceof ApiError) || !hooks.onError) throw error;
    content = hooks.onError(error, context);
  }
  if (content) show(main, content, ticket);
}

function show(main, content, ticket) {
  if (ticket !== renderCount) return;
  main.replaceChildren(...(Array.isArray(content) ? content : [content]));
  main.removeAttribute("aria-busy");
  hooks.afterRender?.(ticket);
}

export function notFound() {
  setTitle("Not found");
  return h(
    "section",
    { class: "panel narrow" },
    h("h1", { tabindex: "-1" }, "Page not found"),
    h("p", {}, "There is nothing at this address."),
    h("p", {}, h("a", { href: "/" }, "Go to your tasks")),
  );
}

/** Links inside the app are followed without reloading the page. */
function onClick(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download")) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin) return;
  if (/^\/(api|docs|redoc|openapi\.json|static|health|metrics)(\/|$)/.test(url.pathname)) return;
  event.preventDefault();
  if (url.pathname === location.pathname && url.search === location.search && url.hash) {
    document.getElementById(url.hash.slice(1))?.focus();
    return;
  }
  navigate(`${url.pathname}${url.search}`);
}

export function startRouter() {
  document.addEventListener("click", onClick);
  window.addEventListener("popstate", () => render());
  return render();
}
