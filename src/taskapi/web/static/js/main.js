// Start-up: learn what the server offers, restore the session from the refresh cookie,
// draw the header and route to the screen of the URL.

import { api, ApiError, endSession, loadCapabilities, onSessionChange, refreshSession, signedIn, user } from "./api.js";
import { h } from "./dom.js";
import { describeProblem } from "./forms.js";
import { toast } from "./notices.js";
import { currentPath, navigate, notFound, render, route, setHooks, setTitle, startRouter } from "./router.js";
import { account } from "./views/account.js";
import { forgotPassword, resetPassword, signIn, signUp, verifyEmail, verifyNotice } from "./views/auth.js";
import { categories } from "./views/categories.js";
import { dashboard } from "./views/dashboard.js";
import { taskForm } from "./views/task-form.js";
import { taskList } from "./views/tasks.js";
import { trash } from "./views/trash.js";

function registerRoutes() {
  route("/", () => {
    navigate(signedIn() ? "/tasks" : "/signin", { replace: true });
    return null;
  }, { public: true });
  route("/signin", signIn, { public: true, guestOnly: true });
  route("/signup", signUp, { public: true, guestOnly: true });
  route("/forgot-password", forgotPassword, { public: true, guestOnly: true });
  route("/verify-email", verifyEmail, { public: true });
  route("/reset-password", resetPassword, { public: true });
  route("/tasks", taskList);
  route("/tasks/new", taskForm);
  route("/tasks/:id", taskForm);
  route("/categories", categories);
  route("/account", account);
  route("/dashboard", dashboard);
  route("/trash", trash);
}

function navigation() {
  return [
    ["/tasks", "Tasks"],
    ["/dashboard", "Dashboard"],
    ["/categories", "Categories"],
    ["/trash", "Trash"],
    ["/account", "Account"],
  ];
}

async function signOut() {
  try {
    await api("POST", "/auth/logout", { tokenTransport: true });
  } catch {
    // Signed out here whatever the server says; the cookie expires on its own.
  }
  endSession("signed-out");
  await navigate("/signin", { replace: true, state: { notice: "You are signed out." } });
}

function renderHeader() {
  const header = document.getElementById("app-header");
  const brand = h("a", { href: "/", class: "brand" }, h("span", { class: "brand-mark", "aria-hidden": "true" }, "✓"), "taskapi");
  if (!signedIn()) {
    header.replaceChildren(h("div", { class: "header-inner" }, brand));
    return;
  }
  const here = location.pathname;
  const nav = h(
    "nav",
    { "aria-label": "Main" },
    h(
      "ul",
      {},
      navigation().map(([href, label]) =>
        h(
          "li",
          {},
          h("a", { href, "aria-current": here === href || here.startsWith(`${href}/`) ? "page" : null }, label),
        ),
      ),
    ),
  );
  header.replaceChildren(
    h(
      "div",
      { class: "header-inner" },
      brand,
      nav,
      h(
        "div",
        { class: "who" },
        h("span", { class: "who-name" }, user()?.full_name || ""),
        h("button", { type: "button", class: "button small quiet", onClick: signOut }, "Sign out"),
      ),
    ),
  );
}

function errorScreen(error) {
  setTitle("Something went wrong");
  return h(
    "section",
    { class: "panel narrow" },
    h("h1", { tabindex: "-1" }, "Something went wrong"),
    h("p", {}, describeProblem(error)),
    h("button", { type: "button", class: "button primary", onClick: () => render() }, "Try again"),
  );
}

function onViewError(error) {
  if (error.status === 401) return null;
  if (error.code === "email_not_verified") return verifyNotice();
  if (error.status === 404) return notFound();
  return errorScreen(error);
}

let firstRender = true;

function afterRender() {
  renderHeader();
  if (firstRender) {
    firstRender = false;
    return;
  }
  const heading = document.querySelector("#main h1");
  if (heading && !document.querySelector("#main [aria-invalid=true], dialog[open]")) heading.focus();
}

onSessionChange((reason) => {
  renderHeader();
  if (reason === "expired") {
    navigate(`/signin?next=${encodeURIComponent(currentPath())}`, {
      replace: true,
      state: { notice: "Your session has ended. Please sign in again." },
    });
  } else if (reason === "elsewhere") {
    navigate("/signin", { replace: true, state: { notice: "You were signed out in another tab." } });
  } else if (reason === "elsewhere-signed-in") {
    refreshSession().then((ok) => {
      if (ok && ["/signin", "/signup", "/forgot-password"].includes(location.pathname)) {
        navigate("/tasks", { replace: true });
      }
    });
  }
});

window.addEventListener("unhandledrejection", (event) => {
  if (event.reason instanceof ApiError) {
    event.preventDefault();
    if (event.reason.status !== 401) toast(describeProblem(event.reason), { kind: "error" });
  }
});

async function start() {
  await Promise.all([loadCapabilities(), refreshSession()]);
  registerRoutes();
  setHooks({ onError: onViewError, afterRender });
  renderHeader();
  await startRouter();
}

start();
