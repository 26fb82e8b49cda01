// Labelled form fields and the display of problem+json errors next to them.

import { h, uid } from "./dom.js";
import { ApiError } from "./api.js";

/**
 * field({label, name, type, value, hint, ...inputAttributes}) -> a wrapper holding the
 * label, the control (input, textarea or select), a hint and an error slot, wired with
 * aria-describedby. `options: [[value, text], ...]` makes a select.
 */
export function field({ label, name, type = "text", value, hint, options, ...rest }) {
  const id = uid(`field-${name}`);
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  const common = {
    id,
    name,
    "aria-describedby": [hintId, errorId].filter(Boolean).join(" "),
    ...rest,
  };
  let control;
  if (type === "select") {
    control = h(
      "select",
      { ...common, value: value ?? "" },
      options.map(([optionValue, text]) => h("option", { value: optionValue }, text)),
    );
  } else if (type === "textarea") {
    control = h("textarea", { ...common, value: value ?? "" });
  } else {
    control = h("input", { ...common, type, value: value ?? "" });
  }
  return h(
    "div",
    { class: "field", "data-field": name },
    h("label", { for: id, class: "label" }, label),
    control,
    hint ? h("p", { id: hintId, class: "hint" }, hint) : null,
    h("p", { id: errorId, class: "field-error", hidden: true }),
  );
}

/** The form-level error box every form starts with (filled by showProblem). */
export function formError() {
  return h("div", { class: "form-error", role: "alert", hidden: true, tabindex: "-1" });
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll(".field-error")) {
    slot.textContent = "";
    slot.hidden = true;
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) {
    control.removeAttribute("aria-invalid");
  }
  const box = form.querySelector(".form-error");
  if (box) {
    box.replaceChildren();
    box.hidden = true;
  }
}

/** Put a message next to a field; false when the form has no such field. */
export function setFieldError(form, name, message) {
  const wrapper = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
  if (!wrapper) return false;
  const slot = wrapper.querySelector(".field-error");
  slot.textContent = message;
  slot.hidden = false;
  const control = wrapper.querySelector("input, select, textarea");
  if (control) control.setAttribute("aria-invalid", "true");
  return true;
}

/** Say something at the top of the form (and focus it so it is read out). */
export function setFormError(form, ...content) {
  const box = form.querySelector(".form-error");
  box.replaceChildren(...content.map((part) => (part instanceof Node ? part : document.createTextNode(part))));
  box.hidden = false;
  box.focus();
}

/** A plain sentence for a refusal that has no field. */
export function describeProblem(error) {
  if (!(error instanceof ApiError)) return "Something went wrong. Please try again.";
  if (error.status === 429) {
    return `Slow down: too many requests. Try again in ${error.retryAfter || 5} s.`;
  }
  if (error.status >= 500) return "The server had a problem. Please try again in a moment.";
  return error.problem.detail || error.problem.title || "The request was refused.";
}

/**
 * Show an ApiError on a form: each `errors[]` entry next to its field (through `aliases`
 * when the API names it differently), the rest at the top. Focuses the first problem.
 */
export function showProblem(form, error, { aliases = {}, codes = {}, focus = true } = {}) {
  clearErrors(form);
  if (error instanceof ApiError && codes[error.code]) {
    const [name, message] = codes[error.code];
    if (setFieldError(form, name, message)) {
      if (focus) focusFirstInvalid(form);
      return;
    }
  }
  const leftovers = [];
  if (error instanceof ApiError && error.errors.length) {
    for (const item of error.errors) {
      const name = aliases[item.field] || item.field;
      const message = inOwnWords(form, item.message, aliases);
      if (!setFieldError(form, name, message)) leftovers.push(`${item.field}: ${message}`);
    }
  }
  if (leftovers.length || !(error instanceof ApiError) || !error.errors.length) {
    const message = leftovers.length ? leftovers.join(". ") : describeProblem(error);
    setFormError(form, message);
    return;
  }
  if (focus) focusFirstInvalid(form);
}

/** A message that names an API field ("before due_date_from") names its label instead. */
function inOwnWords(form, message, aliases) {
  let text = message;
  for (const [apiName, name] of Object.entries(aliases)) {
    const label = form.querySelector(`[data-field="${CSS.escape(name)}"] .label`);
    if (label) text = text.replaceAll(apiName, `“${label.textContent}”`);
  }
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function focusFirstInvalid(form) {
  const first = form.querySelector("[aria-invalid=true]");
  if (first) first.focus();
}

/** Disable a form's submit button while `work` runs, and say so on the button. */
export async function busy(form, work, label = "Saving…") {
  const button = form.querySelector("button[type=submit]");
  const original = button ? button.textContent : null;
  if (button) {
    button.disabled = true;
    button.textContent = label;
  }
  form.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    form.removeAttribute("aria-busy");
    if (button) {
      button.disabled = false;
      button.textContent = original;
    }
  }
}

/** Values of named controls as an object (checkbox groups as arrays). */
export function values(form) {
  const data = {};
  for (const control of form.elements) {
    if (!control.name || control.disabled) continue;
    if (control.type === "checkbox") {
      if (!Array.isArray(data[control.name])) data[control.name] = [];
      if (control.checked) data[control.name].push(control.value);
    } else if (control.type === "radio") {
      if (control.checked) data[control.name] = control.value;
    } else if (control.tagName !== "BUTTON") {
      data[control.name] = control.value;
    }
  }
  return data;
}
