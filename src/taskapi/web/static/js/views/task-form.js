// Create and edit a task, and the version-conflict screen: when a save answers 409
// version_conflict, the saved task is fetched and shown beside the user's change, and the
// user keeps theirs (saved on top of the new version) or takes the saved one.

import { api, ApiError } from "../api.js";
import { h, swatch, uid } from "../dom.js";
import { busy, clearErrors, field, formError, setFormError, showProblem } from "../forms.js";
import {
  describeRule,
  formatDateTime,
  fromLocalInput,
  PRIORITY_LABELS,
  STATUS_LABELS,
  toLocalInput,
} from "../format.js";
import { toast } from "../notices.js";
import { navigate, setTitle } from "../router.js";
import { backToList, deleteTask, listUrl, loadCategories } from "./tasks.js";

const FIELD_LABELS = {
  title: "Title",
  description: "Description",
  priority: "Priority",
  status: "Status",
  due_date: "Due date",
  remind_at: "Reminder",
  recurrence: "Repeat",
};
const WEEKDAYS = [
  ["MO", "Mon"],
  ["TU", "Tue"],
  ["WE", "Wed"],
  ["TH", "Thu"],
  ["FR", "Fri"],
  ["SA", "Sat"],
  ["SU", "Sun"],
];
const FREQUENCIES = [
  ["", "Does not repeat"],
  ["DAILY", "Daily"],
  ["WEEKLY", "Weekly"],
  ["MONTHLY", "Monthly"],
  ["YEARLY", "Yearly"],
];
// The order of the server's canonical spelling of a rule.
const RULE_KEYS = ["FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "COUNT", "UNTIL"];
const UNITS = { DAILY: "days", WEEKLY: "weeks", MONTHLY: "months", YEARLY: "years" };

/** Open the edit screen straight on the conflict between `task` and the user's `changes`. */
export function openConflict(task, changes) {
  return navigate(`/tasks/${task.id}`, { state: { conflict: { base: task, mine: changes } } });
}

function parseRule(rule) {
  const parts = {};
  for (const piece of (rule || "").split(";")) {
    const [key, value] = piece.split("=");
    if (key && value !== undefined) parts[key.trim().toUpperCase()] = value.trim();
  }
  return parts;
}

function untilToDate(until) {
  const found = /^(\d{4})(\d{2})(\d{2})/.exec(until || "");
  return found ? `${found[1]}-${found[2]}-${found[3]}` : "";
}

function dateToUntil(value) {
  const [year, month, day] = value.split("-").map(Number);
  const end = new Date(year, month - 1, day, 23, 59, 59);
  return end.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

/** The rule's parts in the server's canonical order, without the default INTERVAL=1. */
function canonicalRule(rule) {
  if (!rule) return null;
  const parts = parseRule(rule);
  if (parts.INTERVAL === "1") delete parts.INTERVAL;
  return RULE_KEYS.filter((key) => key in parts)
    .map((key) => `${key}=${parts[key]}`)
    .join(";");
}

/**
 * The "Repeat" controls; `read()` gives back an RRULE (or null). Parts it does not show
 * (BYMONTHDAY, a numbered BYDAY such as 1MO) are kept while the frequency allows them.
 */
function recurrenceEditor(rule) {
  const parts = parseRule(rule);
  const frequency = field({ label: "Repeat", name: "freq", type: "select", value: parts.FREQ || "", options: FREQUENCIES });
  const interval = field({
    label: "Every",
    name: "interval",
    type: "number",
    min: 1,
    max: 999,
    value: parts.INTERVAL || "1",
    hint: UNITS[parts.FREQ] || UNITS.DAILY,
  });
  const days = new Set(parts.FREQ === "WEEKLY" ? (parts.BYDAY || "").split(",").filter(Boolean) : []);
  const dayBoxes = h(
    "fieldset",
    { class: "weekdays" },
    h("legend", {}, "On"),
    WEEKDAYS.map(([code, label]) => {
      const id = uid("day");
      return h(
        "span",
        { class: "check" },
        h("input", { type: "checkbox", id, name: "byday", value: code, checked: days.has(code) }),
        h("label", { for: id }, label),
      );
    }),
  );
  const endKind = parts.COUNT ? "count" : parts.UNTIL ? "until" : "never";
  const ends = field({
    label: "Ends",
    name: "ends",
    type: "select",
    value: endKind,
    options: [
      ["never", "Never"],
      ["count", "After a number of times"],
      ["until", "On a date"],
    ],
  });
  const count = field({ label: "Times", name: "count", type: "number", min: 1, max: 999, value: parts.COUNT || "10" });
  const until = field({ label: "Last date", name: "until", type: "date", value: untilToDate(parts.UNTIL) });
  const details = h("div", { class: "recurrence-details" }, interval, dayBoxes, ends, count, until);
  const wrapper = h(
    "fieldset",
    { class: "recurrence", "data-field": "recurrence" },
    h("legend", {}, "Recurrence"),
    frequency,
    details,
  );
  const sync = () => {
    const freq = frequency.querySelector("select").value;
    details.hidden = !freq;
    dayBoxes.hidden = freq !== "WEEKLY";
    interval.querySelector(".hint").textContent = UNITS[freq] || UNITS.DAILY;
    const kind = ends.querySelector("select").value;
    count.hidden = kind !== "count";
    until.hidden = kind !== "until";
  };
  wrapper.addEventListener("change", sync);
  sync();
  const read = () => {
    const freq = frequency.querySelector("select").value;
    if (!freq) return null;
    const chosen = { FREQ: freq };
    const every = Number(interval.querySelector("input").value || 1);
    if (every > 1) chosen.INTERVAL = String(every);
    if (freq === "WEEKLY") {
      const picked = [...dayBoxes.querySelectorAll("input:checked")].map((box) => box.value);
      if (picked.length) chosen.BYDAY = picked.join(",");
    } else if (freq === parts.FREQ && parts.BYDAY) {
      chosen.BYDAY = parts.BYDAY;
    }
    if (freq !== "WEEKLY" && parts.BYMONTHDAY) chosen.BYMONTHDAY = parts.BYMONTHDAY;
    const kind = ends.querySelector("select").value;
    if (kind === "count") chosen.COUNT = count.querySelector("input").value || "1";
    const untilValue = until.querySelector("input").value;
    if (kind === "until" && untilValue) chosen.UNTIL = dateToUntil(untilValue);
    return RULE_KEYS.filter((key) => key in chosen)
      .map((key) => `${key}=${chosen[key]}`)
      .join(";");
  };
  return { element: wrapper, read };
}

function categoryPicker(categories, chosen) {
  const selected = new Set(chosen.map((category) => category.id));
  return h(
    "fieldset",
    { class: "category-picker", "data-field": "categories" },
    h("legend", {}, "Categories"),
    categories.length
      ? h(
          "div",
          { class: "check-grid" },
          categories.map((category) => {
            const id = uid("category");
            return h(
              "span",
              { class: "check" },
              h("input", { type: "checkbox", id, name: "category_ids", value: category.id, checked: selected.has(category.id) }),
              h("label", { for: id }, swatch(category.color), category.name),
            );
          }),
        )
      : h("p", { class: "hint" }, "No categories yet. ", h("a", { href: "/categories" }, "Create one")),
    h("p", { class: "field-error", hidden: true }),
  );
}

function sameInstant(a, b) {
  return toLocalInput(a) === toLocalInput(b);
}

/** The fields of `mine` that differ from `base`, as a PATCH body. */
function changesBetween(base, mine) {
  const changes = {};
  for (const key of ["title", "priority", "status"]) {
    if (key in mine && mine[key] !== base[key]) changes[key] = mine[key];
  }
  if ("description" in mine && (mine.description || null) !== (base.description || null)) {
    changes.description = mine.description || null;
  }
  for (const key of ["due_date", "remind_at"]) {
    if (key in mine && !sameInstant(mine[key], base[key])) changes[key] = mine[key];
  }
  if ("recurrence" in mine && canonicalRule(mine.recurrence) !== canonicalRule(base.recurrence)) {
    changes.recurrence = mine.recurrence;
  }
  return changes;
}

function display(key, task) {
  const value = task[key];
  if (value === null || value === undefined || value === "") return "—";
  if (key === "status") return STATUS_LABELS[value];
  if (key === "priority") return PRIORITY_LABELS[value];
  if (key === "due_date" || key === "remind_at") return formatDateTime(value);
  if (key === "recurrence") return describeRule(value);
  return String(value);
}

async function syncCategories(taskId, before, after) {
  for (const id of after) {
    if (before.includes(id)) continue;
    try {
      await api("POST", `/tasks/${taskId}/categories/${id}`);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 409) throw error;
    }
  }
  for (const id of before) {
    if (after.includes(id)) continue;
    try {
      await api("DELETE", `/tasks/${taskId}/categories/${id}`);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
    }
  }
}

function facts(task) {
  if (!task) return null;
  const items = [
    ["Created", formatDateTime(task.created_at)],
    ["Last changed", formatDateTime(task.updated_at)],
    ["Version", String(task.version)],
  ];
  if (task.completed_at) items.push(["Completed", formatDateTime(task.completed_at)]);
  return h(
    "dl",
    { class: "facts" },
    items.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))),
    task.next_occurrence_id
      ? h("div", {}, h("dt", {}, "Next occurrence"), h("dd", {}, h("a", { href: `/tasks/${task.next_occurrence_id}` }, "Open the next occurrence")))
      : null,
  );
}

export async function taskForm({ params, state, stillCurrent }) {
  const isNew = !params.id;
  const [categories, loaded] = await Promise.all([
    loadCategories(),
    isNew ? Promise.resolve(null) : api("GET", `/tasks/${params.id}`),
  ]);
  if (!stillCurrent()) return null;
  setTitle(isNew ? "New task" : `Edit: ${loaded.title}`);

  const screen = h("section", { class: "panel task-editor" });
  const conflictSlot = h("div", { class: "conflict-slot" });
  let base = state?.conflict ? state.conflict.base : loaded;
  let form = null;
  let recurrence = null;

  const readForm = () => {
    const data = {
      title: form.elements.title.value,
      description: form.elements.description.value,
      priority: form.elements.priority.value,
      due_date: fromLocalInput(form.elements.due_date.value),
    };
    if (!isNew) data.status = form.elements.status.value;
    data.remind_at = fromLocalInput(form.elements.remind_at.value);
    data.recurrence = recurrence.read();
    return data;
  };
  const chosenCategories = () =>
    [...form.querySelectorAll("input[name=category_ids]:checked")].map((box) => box.value);

  const buildForm = (values) => {
    recurrence = recurrenceEditor(values?.recurrence);
    const priorityOptions = Object.entries(PRIORITY_LABELS);
    const built = h(
      "form",
      { class: "stack", novalidate: true },
      formError(),
      field({ label: "Title", name: "title", value: values?.title, required: true, maxlength: 200, hint: "3–200 characters." }),
      field({ label: "Description", name: "description", type: "textarea", value: values?.description, maxlength: 2000, rows: 4 }),
      h(
        "div",
        { class: "row" },
        field({ label: "Priority", name: "priority", type: "select", value: values?.priority || "medium", options: priorityOptions }),
        isNew
          ? null
          : field({ label: "Status", name: "status", type: "select", value: values.status, options: Object.entries(STATUS_LABELS) }),
      ),
      h(
        "div",
        { class: "row" },
        field({ label: "Due date", name: "due_date", type: "datetime-local", value: toLocalInput(values?.due_date) }),
        field({
          label: "Remind me at",
          name: "remind_at",
          type: "datetime-local",
          value: toLocalInput(values?.remind_at),
          hint: "An email at that time.",
        }),
      ),
      recurrence.element,
      categoryPicker(categories, values?.categories || []),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "button primary" }, isNew ? "Create task" : "Save changes"),
        h("a", { href: listUrl(), class: "button quiet" }, "Cancel"),
        isNew ? null : h("button", { type: "button", class: "button danger push-end", onClick: remove }, "Delete task"),
      ),
    );
    built.addEventListener("submit", (event) => {
      event.preventDefault();
      save();
    });
    return built;
  };

  const remove = async () => {
    try {
      await deleteTask(base, backToList);
    } catch (error) {
      showProblem(form, error);
    }
  };

  // "due_date" in a message (a recurrence needs one) is named as its field is labelled.
  const problemOptions = { aliases: { body: "title", due_date: "due_date" } };

  const finish = async (message) => {
    toast(message);
    await backToList();
  };

  const saveNew = async () => {
    const data = readForm();
    const body = { title: data.title, priority: data.priority };
    if (data.description) body.description = data.description;
    if (data.due_date) body.due_date = data.due_date;
    if (data.remind_at) body.remind_at = data.remind_at;
    if (data.recurrence) body.recurrence = data.recurrence;
    const created = await api("POST", "/tasks", { body });
    await syncCategories(created.id, [], chosenCategories());
    await finish(`Created “${created.title}”.`);
  };

  /** PATCH `changes` on top of `version`; a conflict opens the merge choice. */
  const patch = async (changes, version) => {
    try {
      const saved = Object.keys(changes).length
        ? await api("PATCH", `/tasks/${base.id}`, { body: { ...changes, version } })
        : base;
      await syncCategories(saved.id, base.categories.map((category) => category.id), chosenCategories());
      await finish(`Saved “${saved.title}”.`);
    } catch (error) {
      if (error instanceof ApiError && error.code === "version_conflict") {
        const server = await api("GET", `/tasks/${base.id}`);
        showConflict(changes, server);
        return;
      }
      throw error;
    }
  };

  const save = async () => {
    clearErrors(form);
    try {
      await busy(form, () => (isNew ? saveNew() : patch(changesBetween(base, readForm()), base.version)));
    } catch (error) {
      showProblem(form, error, problemOptions);
    }
  };

  const showConflict = (mine, server) => {
    const serverChanged = Object.keys(FIELD_LABELS).filter(
      (key) => key in server && Object.keys(changesBetween(base, { [key]: server[key] })).length,
    );
    const keys = [...new Set([...Object.keys(mine), ...serverChanged])].filter((key) => FIELD_LABELS[key]);
    const headingId = uid("conflict");
    const mineAsTask = { ...base, ...mine };
    const table = h(
      "table",
      { class: "conflict-table" },
      h("caption", { class: "visually-hidden" }, "Your change and the saved task, field by field"),
      h(
        "thead",
        {},
        h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "When you opened it"), h("th", { scope: "col" }, "Your change"), h("th", { scope: "col" }, "Saved now")),
      ),
      h(
        "tbody",
        {},
        keys.map((key) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, FIELD_LABELS[key]),
            h("td", { "data-label": "When you opened it" }, display(key, base)),
            h(
              "td",
              { class: key in mine ? "changed" : "", "data-label": "Your change" },
              display(key, mineAsTask),
            ),
            h(
              "td",
              { class: serverChanged.includes(key) ? "changed" : "", "data-label": "Saved now" },
              display(key, server),
            ),
          ),
        ),
      ),
    );
    const keepMine = h("button", { type: "button", class: "button primary" }, "Keep mine");
    const takeTheirs = h("button", { type: "button", class: "button" }, "Take the saved version");
    const panel = h(
      "div",
      { class: "conflict", role: "region", "aria-labelledby": headingId },
      h("h2", { id: headingId, tabindex: "-1" }, "This task was changed somewhere else"),
      h(
        "p",
        {},
        `While you were editing, it was saved again (now version ${server.version}). `,
        "Keep your change on top of it, or take the saved version and drop yours.",
      ),
      h("div", { class: "table-scroll" }, table),
      formError(),
      h("div", { class: "actions" }, keepMine, takeTheirs),
    );
    keepMine.addEventListener("click", async () => {
      // Only the fields the user changed go on top of the saved version; the rest of the
      // saved version (someone else's changes) stays.
      const previousBase = base;
      base = server;
      keepMine.disabled = true;
      try {
        await patch(mine, server.version);
      } catch (error) {
        base = previousBase;
        keepMine.disabled = false;
        showProblem(panel, error);
        const message = panel.querySelector(".form-error");
        message.append(" ", h("button", { type: "button", class: "button small", onClick: showForm }, "Edit again"));
      }
    });
    takeTheirs.addEventListener("click", () => {
      base = server;
      draw(server);
      toast("Showing the saved version; your change was dropped.");
      form.elements.title.focus();
    });
    const showForm = () => {
      conflictSlot.replaceChildren();
      form.hidden = false;
      screen.querySelector(".facts")?.removeAttribute("hidden");
      setFormError(form, "Your change was not saved.");
    };
    form.hidden = true;
    // The facts describe the version the user opened; the panel says what is saved now.
    screen.querySelector(".facts")?.setAttribute("hidden", "");
    conflictSlot.replaceChildren(panel);
    panel.querySelector("h2").focus();
  };

  const draw = (values) => {
    form = buildForm(values);
    conflictSlot.replaceChildren();
    screen.replaceChildren(
      ...[
      h(
        "div",
        { class: "screen-head" },
        h("h1", { tabindex: "-1" }, isNew ? "New task" : "Edit task"),
        h("a", { href: listUrl() }, "← Back to tasks"),
      ),
      conflictSlot,
      form,
      facts(isNew ? null : base),
      ].filter(Boolean),
    );
  };

  if (state?.conflict) {
    draw({ ...base, ...state.conflict.mine });
    showConflict(state.conflict.mine, loaded);
  } else {
    draw(loaded);
  }
  return screen;
}

