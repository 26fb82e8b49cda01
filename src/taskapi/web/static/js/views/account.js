// The account: name, password, sessions and personal access tokens (when the server has
// them), sign out everywhere, delete the account.

import { api, ApiError, caps, endSession, refreshSession, setUser, user } from "../api.js";
import { h, srOnly, uid } from "../dom.js";
import { busy, clearErrors, describeProblem, field, formError, showProblem, values } from "../forms.js";
import { formatDateTime, fromNow } from "../format.js";
import { announce, confirmDialog, toast } from "../notices.js";
import { navigate, setTitle } from "../router.js";

const DEFAULT_SCOPES = ["tasks:read", "tasks:write", "categories:read", "categories:write", "webhooks:manage"];
const PASSWORD_RULES = "8–128 characters with an uppercase letter, a digit and one of !@#$%^&*.";

function section(title, ...content) {
  const id = uid("section");
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), ...content);
}

function itemsOf(answer) {
  return Array.isArray(answer) ? answer : answer.items || [];
}

function resendButton(me) {
  const button = h("button", { type: "button", class: "button small" }, "Resend the verification link");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api("POST", "/auth/resend-verification", { body: { email: me.email }, auth: false });
      toast(`A new link is on its way to ${me.email}.`);
    } catch (error) {
      toast(describeProblem(error), { kind: "error" });
    } finally {
      button.disabled = false;
    }
  });
  return h("p", {}, button);
}

function profileSection(me) {
  const form = h(
    "form",
    { class: "stack", novalidate: true },
    formError(),
    h("p", {}, "Email: ", h("strong", {}, me.email), me.is_active ? " (verified)" : " (not verified yet)"),
    me.is_active ? null : resendButton(me),
    field({ label: "Full name", name: "full_name", value: me.full_name, autocomplete: "name", required: true, maxlength: 200 }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button primary" }, "Save name")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      const updated = await busy(form, () => api("PATCH", "/users/me", { body: { full_name: values(form).full_name } }));
      setUser(updated);
      toast("Your name is saved.");
    } catch (error) {
      showProblem(form, error);
    }
  });
  return section("Profile", form);
}

function passwordSection(afterChange) {
  const form = h(
    "form",
    { class: "stack", novalidate: true },
    formError(),
    field({ label: "Current password", name: "current_password", type: "password", autocomplete: "current-password", required: true }),
    field({
      label: "New password",
      name: "new_password",
      type: "password",
      autocomplete: "new-password",
      required: true,
      hint: PASSWORD_RULES,
    }),
    field({ label: "Repeat the new password", name: "new_password_again", type: "password", autocomplete: "new-password", required: true }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button primary" }, "Change password")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const data = values(form);
    if (data.new_password !== data.new_password_again) {
      showProblem(form, new ApiError(400, { errors: [{ field: "new_password_again", message: "The two passwords differ." }] }));
      return;
    }
    try {
      await busy(form, () =>
        api("POST", "/users/me/password", {
          body: { current_password: data.current_password, new_password: data.new_password },
        }),
      );
      // Access tokens issued before the change are refused now; this session's refresh
      // token still works.
      await refreshSession();
      form.reset();
      toast("Password changed. Your other sessions were signed out.");
      await afterChange();
    } catch (error) {
      showProblem(form, error, {
        codes: { incorrect_password: ["current_password", "This is not your current password."] },
      });
    }
  });
  return section("Password", form);
}

function describeAgent(agent) {
  if (!agent) return "Unknown device";
  const browser = /Edg\//.test(agent)
    ? "Edge"
    : /Firefox\//.test(agent)
      ? "Firefox"
      : /Chrom(e|ium)\//.test(agent)
        ? "Chrome"
        : /Safari\//.test(agent)
          ? "Safari"
          : null;
  const system = /Android/.test(agent)
    ? "Android"
    : /iPhone|iPad/.test(agent)
      ? "iOS"
      : /Windows/.test(agent)
        ? "Windows"
        : /Mac OS X/.test(agent)
          ? "macOS"
          : /Linux/.test(agent)
            ? "Linux"
            : null;
  return browser && system ? `${browser} on ${system}` : agent.slice(0, 60);
}

function sessionsSection() {
  const list = h("ul", { class: "sessions", "aria-label": "Signed-in sessions" });
  const load = async () => {
    const sessions = itemsOf(await api("GET", "/auth/sessions"));
    list.replaceChildren(
      ...sessions.map((item) => {
        const label = describeAgent(item.user_agent);
        const action = item.current
          ? h("span", { class: "badge current" }, "This device")
          : h(
              "button",
              {
                type: "button",
                class: "button small danger-quiet",
                onClick: async (event) => {
                  const button = event.currentTarget;
                  button.disabled = true;
                  try {
                    await api("DELETE", `/auth/sessions/${item.id}`);
                    announce(`Signed out ${label}.`);
                  } catch (error) {
                    // 404: it ended meanwhile (signed out there, or expired); the list catches up.
                    if (!(error instanceof ApiError) || error.status !== 404) {
                      toast(describeProblem(error), { kind: "error" });
                      button.disabled = false;
                      return;
                    }
                  }
                  await load();
                  list.querySelector("button")?.focus();
                },
              },
              "Revoke",
              srOnly(` ${label}, signed in ${formatDateTime(item.created_at)}`),
            );
        return h(
          "li",
          { class: "session" },
          h(
            "div",
            {},
            h("strong", {}, label),
            h(
              "p",
              { class: "hint" },
              item.ip ? `${item.ip} · ` : "",
              `signed in ${formatDateTime(item.created_at)}`,
              item.last_used_at ? ` · active ${fromNow(item.last_used_at)}` : "",
            ),
          ),
          action,
        );
      }),
    );
  };
  return {
    element: section("Sessions", h("p", {}, "Where your account is signed in. Revoke any you don't recognise."), list),
    load,
  };
}

function tokensSection() {
  const scopes = caps().scopes?.length ? caps().scopes : DEFAULT_SCOPES;
  const list = h("ul", { class: "tokens", "aria-label": "Personal access tokens" });
  const shown = h("div", { class: "new-token", hidden: true, role: "status" });
  const form = h(
    "form",
    { class: "stack", novalidate: true, "aria-label": "New personal access token" },
    formError(),
    field({ label: "Token name", name: "name", required: true, maxlength: 100, hint: "What uses it, e.g. “CI script”." }),
    h(
      "fieldset",
      { class: "check-grid", "data-field": "scopes" },
      h("legend", {}, "Scopes"),
      scopes.map((scope) => {
        const id = uid("scope");
        return h(
          "span",
          { class: "check" },
          h("input", { type: "checkbox", id, name: "scopes", value: scope, checked: scope.endsWith(":read") }),
          h("label", { for: id }, scope),
        );
      }),
      h("p", { class: "field-error", hidden: true }),
    ),
    field({
      label: "Expires",
      name: "expires_in_days",
      type: "select",
      value: "90",
      options: [
        ["30", "In 30 days"],
        ["90", "In 90 days"],
        ["365", "In a year"],
        ["", "Never"],
      ],
    }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button primary" }, "Create token")),
  );
  const load = async () => {
    const tokens = itemsOf(await api("GET", "/auth/tokens"));
    list.replaceChildren(
      ...tokens.map((token) =>
        h(
          "li",
          { class: "session" },
          h(
            "div",
            {},
            h("strong", {}, token.name),
            h(
              "p",
              { class: "hint" },
              token.scopes.join(", "),
              ` · ${token.expires_at ? `expires ${formatDateTime(token.expires_at)}` : "never expires"}`,
              ` · ${token.last_used_at ? `used ${fromNow(token.last_used_at)}` : "never used"}`,
            ),
          ),
          h(
            "button",
            {
              type: "button",
              class: "button small danger-quiet",
              onClick: async () => {
                const sure = await confirmDialog({
                  title: `Revoke “${token.name}”?`,
                  body: "Anything using this token stops working at once.",
                  confirm: "Revoke token",
                  danger: true,
                });
                if (!sure) return;
                try {
                  await api("DELETE", `/auth/tokens/${token.id}`);
                  announce(`Revoked ${token.name}.`);
                  await load();
                } catch (error) {
                  toast(describeProblem(error), { kind: "error" });
                }
              },
            },
            "Revoke",
            srOnly(` ${token.name}`),
          ),
        ),
      ),
    );
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const data = values(form);
    const body = { name: data.name, scopes: data.scopes || [] };
    body.expires_in_days = data.expires_in_days ? Number(data.expires_in_days) : null;
    try {
      const made = await busy(form, () => api("POST", "/auth/tokens", { body }), "Creating…");
      const tokenId = uid("token");
      const input = h("input", { id: tokenId, type: "text", readonly: true, value: made.token, class: "mono" });
      shown.replaceChildren(
        h("p", {}, h("strong", {}, "Copy your new token now: "), "it is shown only once."),
        h("label", { for: tokenId, class: "label" }, `Token “${made.name}”`),
        h(
          "div",
          { class: "copy-row" },
          input,
          h(
            "button",
            {
              type: "button",
              class: "button small",
              onClick: async () => {
                input.select();
                try {
                  await navigator.clipboard.writeText(made.token);
                  announce("Copied.");
                } catch {
                  announce("Press Ctrl+C to copy the selected token.");
                }
              },
            },
            "Copy",
          ),
        ),
      );
      shown.hidden = false;
      // Back to the defaults the form was drawn with (reset() would clear the checkboxes).
      form.elements.name.value = "";
      for (const box of form.querySelectorAll("input[name=scopes]")) box.checked = box.value.endsWith(":read");
      form.elements.expires_in_days.value = "90";
      await load();
      input.focus();
      input.select();
    } catch (error) {
      showProblem(form, error);
    }
  });
  return {
    element: section(
      "Personal access tokens",
      h("p", {}, "Tokens let scripts use the API as you, limited to the scopes you pick."),
      form,
      shown,
      list,
    ),
    load,
  };
}

function dangerSection() {
  const everywhere = h("button", { type: "button", class: "button" }, "Sign out everywhere");
  everywhere.addEventListener("click", async () => {
    const sure = await confirmDialog({
      title: "Sign out everywhere?",
      body: "Every session on every device ends, this one included.",
      confirm: "Sign out everywhere",
    });
    if (!sure) return;
    try {
      await api("POST", "/auth/logout-all", { tokenTransport: true });
    } catch (error) {
      toast(describeProblem(error), { kind: "error" });
      return;
    }
    endSession("signed-out");
    await navigate("/signin", { replace: true, state: { notice: "You are signed out on every device." } });
  });
  const remove = h("button", { type: "button", class: "button danger" }, "Delete my account");
  remove.addEventListener("click", async () => {
    const me = user();
    const sure = await confirmDialog({
      title: "Delete your account?",
      body: "Your account, tasks and categories are removed for good. This cannot be undone.",
      confirm: "Delete account",
      danger: true,
      confirmWord: "DELETE",
    });
    if (!sure) return;
    try {
      await api("DELETE", "/users/me");
    } catch (error) {
      toast(describeProblem(error), { kind: "error" });
      return;
    }
    endSession("signed-out");
    await navigate("/signin", { replace: true, state: { notice: `The account ${me.email} is deleted.` } });
  });
  return section(
    "Sign out and delete",
    h("div", { class: "danger-row" }, h("p", {}, "End every session, on all your devices."), everywhere),
    h("div", { class: "danger-row" }, h("p", {}, "Remove your account and everything in it."), remove),
  );
}

export async function account({ stillCurrent }) {
  setTitle("Account");
  const me = await api("GET", "/users/me");
  setUser(me);
  const sessions = caps().sessions ? sessionsSection() : null;
  const parts = [profileSection(me), passwordSection(async () => sessions?.load())];
  const loads = [];
  if (sessions) {
    parts.push(sessions.element);
    loads.push(sessions.load());
  }
  if (caps().tokens) {
    const tokens = tokensSection();
    parts.push(tokens.element);
    loads.push(tokens.load());
  }
  parts.push(dangerSection());
  await Promise.all(loads);
  if (!stillCurrent()) return null;
  return h(
    "div",
    { class: "account-screen" },
    h("div", { class: "screen-head" }, h("h1", { tabindex: "-1" }, "Account")),
    ...parts,
  );
}
