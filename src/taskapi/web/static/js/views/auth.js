// Sign up, sign in, the verify-email landing, forgot / reset password, and the notice an
// unverified account sees.

import { api, acceptTokens, ApiError, endSession, refreshSession, setUser, user } from "../api.js";
import { h } from "../dom.js";
import { busy, clearErrors, field, formError, setFormError, showProblem, values } from "../forms.js";
import { formatDateTime, fromNow } from "../format.js";
import { announce, toast } from "../notices.js";
import { navigate, setTitle } from "../router.js";

const PASSWORD_RULES = "8–128 characters with an uppercase letter, a digit and one of !@#$%^&*.";

function panel(title, ...content) {
  setTitle(title);
  return h(
    "section",
    { class: "panel narrow auth" },
    h("h1", { tabindex: "-1" }, title),
    ...content,
  );
}

function notice(state) {
  return state?.notice ? h("p", { class: "notice", role: "status" }, state.notice) : null;
}

/** Where to go after signing in: the `next` of the URL when it is a path of this app. */
function nextPath(query) {
  const next = query.get("next");
  return next && next.startsWith("/") && !next.startsWith("//") ? next : "/tasks";
}

function afterSignIn(tokens, query) {
  acceptTokens(tokens);
  return navigate(nextPath(query), { replace: true });
}

function passwordsMatch(form, first, second) {
  if (form.elements[first].value === form.elements[second].value) return true;
  clearErrors(form);
  const wrapper = form.querySelector(`[data-field="${second}"]`);
  const slot = wrapper.querySelector(".field-error");
  slot.textContent = "The two passwords differ.";
  slot.hidden = false;
  form.elements[second].setAttribute("aria-invalid", "true");
  form.elements[second].focus();
  return false;
}

export function signIn({ query, state }) {
  const form = h(
    "form",
    { novalidate: true, class: "stack" },
    formError(),
    field({ label: "Email", name: "email", type: "email", autocomplete: "username", required: true }),
    field({
      label: "Password",
      name: "password",
      type: "password",
      autocomplete: "current-password",
      required: true,
    }),
    h("button", { type: "submit", class: "button primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const { email, password } = values(form);
    try {
      const tokens = await busy(
        form,
        () => api("POST", "/auth/login", { body: { email, password }, auth: false, tokenTransport: true }),
        "Signing in…",
      );
      await afterSignIn(tokens, query);
    } catch (error) {
      if (error instanceof ApiError && error.code === "account_locked") {
        const until = error.problem.locked_until;
        setFormError(
          form,
          `Too many failed attempts: this account is locked until ${formatDateTime(until)} (${fromNow(until)}). `,
          h("a", { href: "/forgot-password" }, "Reset your password"),
          " to unlock it now.",
        );
      } else if (error instanceof ApiError && error.status === 401) {
        setFormError(form, "Email or password is wrong.");
      } else {
        showProblem(form, error);
      }
    }
  });
  return panel(
    "Sign in",
    notice(state),
    form,
    h(
      "p",
      { class: "links" },
      h("a", { href: "/forgot-password" }, "Forgot your password?"),
      " · ",
      h("a", { href: "/signup" }, "Create an account"),
    ),
  );
}

export function signUp({ query }) {
  const form = h(
    "form",
    { novalidate: true, class: "stack" },
    formError(),
    field({ label: "Full name", name: "full_name", autocomplete: "name", required: true, maxlength: 200 }),
    field({ label: "Email", name: "email", type: "email", autocomplete: "email", required: true }),
    field({
      label: "Password",
      name: "password",
      type: "password",
      autocomplete: "new-password",
      required: true,
      hint: PASSWORD_RULES,
    }),
    field({
      label: "Repeat the password",
      name: "password_again",
      type: "password",
      autocomplete: "new-password",
      required: true,
    }),
    h("button", { type: "submit", class: "button primary" }, "Create account"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!passwordsMatch(form, "password", "password_again")) return;
    clearErrors(form);
    const { full_name, email, password } = values(form);
    try {
      const tokens = await busy(
        form,
        () =>
          api("POST", "/auth/register", {
            body: { full_name, email, password },
            auth: false,
            tokenTransport: true,
          }),
        "Creating your account…",
      );
      toast(`Welcome! We sent a link to ${tokens.user.email} to verify your address.`);
      await afterSignIn(tokens, query);
    } catch (error) {
      showProblem(form, error, {
        codes: { email_taken: ["email", "An account with this email already exists. Sign in instead?"] },
      });
    }
  });
  return panel(
    "Create your account",
    form,
    h("p", { class: "links" }, "Already have an account? ", h("a", { href: "/signin" }, "Sign in")),
  );
}

function verifyNoticeContent(me) {
  const status = h("p", { role: "status", class: "notice", hidden: true });
  const resend = h(
    "button",
    {
      type: "button",
      class: "button",
      onClick: async () => {
        resend.disabled = true;
        try {
          await api("POST", "/auth/resend-verification", { body: { email: me.email }, auth: false });
          status.textContent = `A new link is on its way to ${me.email}.`;
        } catch (error) {
          status.textContent =
            error instanceof ApiError && error.status === 429
              ? `Slow down: try again in ${error.retryAfter || 5} s.`
              : "The link could not be sent. Please try again.";
        } finally {
          status.hidden = false;
          resend.disabled = false;
        }
      },
    },
    "Resend the link",
  );
  return [
    h(
      "p",
      {},
      "Your email address is not verified yet. We sent a link to ",
      h("strong", {}, me?.email || "your address"),
      ": open it to start using taskapi.",
    ),
    h("div", { class: "actions" }, resend, h("a", { class: "button quiet", href: "/account" }, "Account")),
    status,
  ];
}

/** The answer to 403 email_not_verified on any screen. */
export function verifyNotice() {
  setTitle("Verify your email");
  return h(
    "section",
    { class: "panel narrow" },
    h("h1", { tabindex: "-1" }, "Verify your email first"),
    ...verifyNoticeContent(user()),
  );
}

export async function verifyEmail({ query }) {
  const token = query.get("token");
  // The token has done its job once read; keep it out of the history and of later referrers.
  history.replaceState(null, "", "/verify-email");
  if (!token) return invalidLink("This link has no token. Open the link from the email again.");
  try {
    const verified = await api("POST", "/auth/verify-email", { body: { token }, auth: false });
    if (await refreshSession()) {
      setUser(verified);
      toast("Your email is verified. Welcome!");
      await navigate("/tasks", { replace: true });
      return null;
    }
    return signIn({
      query: new URLSearchParams(),
      state: { notice: `Your email ${verified.email} is verified. Sign in to continue.` },
    });
  } catch (error) {
    if (error instanceof ApiError && error.status === 400) {
      return invalidLink("This verification link is invalid, expired or already used.");
    }
    throw error;
  }
}

function invalidLink(message) {
  const form = h(
    "form",
    { novalidate: true, class: "stack" },
    formError(),
    h("p", {}, "Enter your email to get a new link."),
    field({ label: "Email", name: "email", type: "email", autocomplete: "email", required: true }),
    h("button", { type: "submit", class: "button primary" }, "Send a new link"),
  );
  const done = h("p", { class: "notice", role: "status", hidden: true });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { email } = values(form);
    try {
      await busy(form, () => api("POST", "/auth/resend-verification", { body: { email }, auth: false }), "Sending…");
      done.textContent = `If ${email} needs verifying, a new link is on its way.`;
      done.hidden = false;
      announce(done.textContent);
    } catch (error) {
      showProblem(form, error);
    }
  });
  return panel("Verify your email", h("p", { class: "problem" }, message), form, done);
}

export function forgotPassword() {
  const form = h(
    "form",
    { novalidate: true, class: "stack" },
    formError(),
    field({ label: "Email", name: "email", type: "email", autocomplete: "email", required: true }),
    h("button", { type: "submit", class: "button primary" }, "Email me a reset link"),
  );
  const done = h("p", { class: "notice", role: "status", hidden: true });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const { email } = values(form);
    try {
      await busy(form, () => api("POST", "/auth/forgot-password", { body: { email }, auth: false }), "Sending…");
      done.textContent = `If an account uses ${email}, a reset link is on its way. It works for one hour.`;
      done.hidden = false;
      announce(done.textContent);
    } catch (error) {
      showProblem(form, error);
    }
  });
  return panel(
    "Forgot your password?",
    h("p", {}, "We'll email you a link to choose a new one."),
    form,
    done,
    h("p", { class: "links" }, h("a", { href: "/signin" }, "Back to sign in")),
  );
}

export function resetPassword({ query }) {
  const token = query.get("token");
  history.replaceState(null, "", "/reset-password");
  if (!token) {
    return panel(
      "Choose a new password",
      h("p", { class: "problem" }, "This link has no token. "),
      h("p", {}, h("a", { href: "/forgot-password" }, "Ask for a new reset link")),
    );
  }
  const form = h(
    "form",
    { novalidate: true, class: "stack" },
    formError(),
    field({
      label: "New password",
      name: "new_password",
      type: "password",
      autocomplete: "new-password",
      required: true,
      hint: PASSWORD_RULES,
    }),
    field({
      label: "Repeat the new password",
      name: "new_password_again",
      type: "password",
      autocomplete: "new-password",
      required: true,
    }),
    h("button", { type: "submit", class: "button primary" }, "Set the new password"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!passwordsMatch(form, "new_password", "new_password_again")) return;
    clearErrors(form);
    const { new_password } = values(form);
    try {
      await busy(form, () => api("POST", "/auth/reset-password", { body: { token, new_password }, auth: false }));
      endSession("signed-out");
      await navigate("/signin", {
        replace: true,
        state: { notice: "Your password is changed and every session was signed out. Sign in with the new password." },
      });
    } catch (error) {
      if (error instanceof ApiError && error.code === "invalid_token") {
        setFormError(
          form,
          "This reset link is invalid, expired or already used. ",
          h("a", { href: "/forgot-password" }, "Ask for a new one"),
          ".",
        );
      } else {
        showProblem(form, error);
      }
    }
  });
  return panel("Choose a new password", form);
}
