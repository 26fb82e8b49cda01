// Toasts (short messages, some with an action such as Undo), the banner for a server that
// is down or busy, an announcer for screen readers, and confirmation dialogs.

import { h } from "./dom.js";

const TOAST_SECONDS = 8;
const MAX_TOASTS = 3;

function region(id) {
  return document.getElementById(id);
}

/** Tell screen-reader users something that has no visible focus change. */
export function announce(message) {
  const announcer = region("announcer");
  if (!announcer) return;
  announcer.textContent = "";
  // A new text node in a live region after a tick is announced even when it repeats.
  setTimeout(() => {
    announcer.textContent = message;
  }, 50);
}

/**
 * toast("Task deleted", {action: {label: "Undo", run}, kind: "error"}).
 * It stays while hovered or focused, so a keyboard user can reach its button.
 */
export function toast(message, { action = null, kind = "info", seconds = TOAST_SECONDS } = {}) {
  const container = region("toasts");
  const item = h("div", { class: ["toast", `toast-${kind}`] });
  let timer = null;
  const close = () => {
    clearTimeout(timer);
    item.remove();
  };
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(close, seconds * 1000);
  };
  item.append(h("p", { class: "toast-message" }, message));
  if (action) {
    item.append(
      h(
        "button",
        {
          type: "button",
          class: "button small",
          onClick: async () => {
            close();
            await action.run();
          },
        },
        action.label,
      ),
    );
  }
  item.append(
    h(
      "button",
      { type: "button", class: "button small quiet", "aria-label": "Dismiss message", onClick: close },
      "×",
    ),
  );
  item.addEventListener("mouseenter", () => clearTimeout(timer));
  item.addEventListener("mouseleave", arm);
  item.addEventListener("focusin", () => clearTimeout(timer));
  item.addEventListener("focusout", (event) => {
    if (!item.contains(event.relatedTarget)) arm();
  });
  container.append(item);
  while (container.children.length > MAX_TOASTS) container.firstElementChild.remove();
  arm();
  return close;
}

let active = null;

/**
 * A banner at the top with a countdown. Resolves when the countdown ends or the user
 * presses its button (when `button` is given), so callers can retry then. Callers that
 * hit the same condition while it shows share it; another kind of banner replaces it.
 */
export function banner({ kind, message, seconds, button = null }) {
  if (active && active.kind === kind) return active.promise;
  if (active) active.finish();
  const host = region("banner");
  let left = Math.max(1, Math.ceil(seconds));
  const count = h("span", { class: "banner-count" }, String(left));
  let timer = null;
  let resolvePromise;
  const promise = new Promise((resolve) => {
    resolvePromise = resolve;
  });
  const current = {
    kind,
    promise,
    finish() {
      clearInterval(timer);
      if (active === current) active = null;
      resolvePromise();
    },
  };
  const parts = [h("p", {}, message.before, count, message.after)];
  if (button) {
    parts.push(h("button", { type: "button", class: "button small", onClick: current.finish }, button));
  }
  host.replaceChildren(h("div", { class: ["banner", `banner-${kind}`] }, parts));
  host.hidden = false;
  announce(`${message.before}${left}${message.after}`);
  timer = setInterval(() => {
    left -= 1;
    count.textContent = String(Math.max(left, 0));
    if (left <= 0) current.finish();
  }, 1000);
  active = current;
  return promise;
}

/** Remove the banner (the condition it reported is over). */
export function hideBanner() {
  if (active) active.finish();
  const host = region("banner");
  if (!host) return;
  host.replaceChildren();
  host.hidden = true;
}

/**
 * A modal confirmation. `confirmWord`, when given, must be typed before the confirm button
 * works (for deleting an account). Resolves true or false.
 */
export function confirmDialog({ title, body, confirm, danger = false, confirmWord = null }) {
  return new Promise((resolve) => {
    const headingId = `dialog-title-${Date.now()}`;
    const confirmButton = h(
      "button",
      { type: "submit", class: ["button", danger ? "danger" : "primary"], value: "yes" },
      confirm,
    );
    let typed = null;
    if (confirmWord) {
      typed = h("input", {
        type: "text",
        name: "confirm-word",
        autocomplete: "off",
        spellcheck: "false",
        required: true,
      });
      confirmButton.disabled = true;
      typed.addEventListener("input", () => {
        confirmButton.disabled = typed.value.trim() !== confirmWord;
      });
    }
    const dialog = h(
      "dialog",
      { class: "dialog", "aria-labelledby": headingId },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: headingId }, title),
        h("p", {}, body),
        typed
          ? h("label", { class: "field" }, h("span", { class: "label" }, `Type ${confirmWord} to confirm`), typed)
          : null,
        h(
          "div",
          { class: "actions" },
          h("button", { type: "submit", class: "button", value: "no" }, "Cancel"),
          confirmButton,
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      const answer = dialog.returnValue === "yes";
      dialog.remove();
      resolve(answer);
    });
    document.body.append(dialog);
    dialog.showModal();
    (typed || dialog.querySelector("button[value=no]")).focus();
  });
}
