// The task list: filters, search, sort, pages and counts, all kept in the URL so a reload
// or the back button shows the same list. Quick completion and delete (to the trash, with
// Undo) work from the list.

import { api, ApiError } from "../api.js";
import { h, swatch, srOnly } from "../dom.js";
import { clearErrors, describeProblem, field, formError, showProblem } from "../forms.js";
import {
  dayBoundary,
  describeRule,
  formatDateTime,
  plural,
  PRIORITY_LABELS,
  SORT_LABELS,
  STATUS_LABELS,
} from "../format.js";
import { announce, toast } from "../notices.js";
import { navigate, replaceQuery, setTitle } from "../router.js";
import { openConflict } from "./task-form.js";

const FILTER_KEYS = ["q", "status", "priority", "category_id", "due_from", "due_to", "sort_by", "sort_order", "limit"];
const DEFAULTS = { sort_by: "created_at", sort_order: "desc", limit: "20", page: "1" };
const PAGE_SIZES = ["5", "10", "20", "50", "100"];
const SEARCH_DELAY_MS = 300;
const LIST_URL_KEY = "taskapi-list";

export async function loadCategories() {
  const answer = await api("GET", "/categories");
  return answer.items;
}

function listQuery(state) {
  return {
    q: state.q,
    status: state.status,
    priority: state.priority,
    category_id: state.category_id,
    due_date_from: dayBoundary(state.due_from, false),
    due_date_to: dayBoundary(state.due_to, true),
    sort_by: state.sort_by,
    sort_order: state.sort_order,
    page: state.page,
    limit: state.limit,
  };
}

function stateFrom(query) {
  const state = { ...DEFAULTS };
  for (const key of [...FILTER_KEYS, "page"]) {
    const value = query.get(key);
    if (value) state[key] = value;
  }
  return state;
}

function urlParams(state) {
  const params = new URLSearchParams();
  for (const key of [...FILTER_KEYS, "page"]) {
    if (state[key] && state[key] !== DEFAULTS[key]) params.set(key, state[key]);
  }
  return params;
}

/** Delete a task (to the trash) and offer Undo, which restores it; `after` runs after each. */
export async function deleteTask(task, after) {
  await api("DELETE", `/tasks/${task.id}`);
  await after();
  toast(`Deleted “${task.title}”.`, {
    seconds: 10,
    action: {
      label: "Undo",
      run: async () => {
        try {
          await api("POST", `/tasks/${task.id}/restore`);
          toast(`Restored “${task.title}”.`);
          await after();
        } catch (error) {
          toast(describeProblem(error), { kind: "error" });
        }
      },
    },
  });
}

function categoryChips(categories) {
  if (!categories.length) return null;
  return h(
    "ul",
    { class: "chips", "aria-label": "Categories" },
    categories.map((category) => h("li", { class: "chip" }, swatch(category.color), category.name)),
  );
}

function isOverdue(task) {
  return task.due_date && task.status !== "completed" && new Date(task.due_date) < new Date();
}

function taskItem(task, refresh) {
  const doneId = `done-${task.id}`;
  const done = h("input", {
    type: "checkbox",
    id: doneId,
    class: "done-toggle",
    checked: task.status === "completed",
  });
  done.addEventListener("change", async () => {
    const status = done.checked ? "completed" : "pending";
    done.disabled = true;
    try {
      await api("PATCH", `/tasks/${task.id}`, { body: { status, version: task.version } });
      announce(done.checked ? `Completed “${task.title}”.` : `Reopened “${task.title}”.`);
      await refresh();
    } catch (error) {
      done.checked = !done.checked;
      done.disabled = false;
      if (error instanceof ApiError && error.code === "version_conflict") {
        openConflict(task, { status });
      } else {
        toast(describeProblem(error), { kind: "error" });
      }
    }
  });
  const deleteButton = h(
    "button",
    { type: "button", class: "button small danger-quiet" },
    "Delete",
    srOnly(` “${task.title}”`),
  );
  deleteButton.addEventListener("click", async () => {
    try {
      await deleteTask(task, refresh);
    } catch (error) {
      toast(describeProblem(error), { kind: "error" });
    }
  });
  const due = task.due_date
    ? h(
        "span",
        { class: ["due", isOverdue(task) && "overdue"] },
        isOverdue(task) ? "Overdue: " : "Due ",
        h("time", { datetime: task.due_date }, formatDateTime(task.due_date)),
      )
    : null;
  return h(
    "li",
    { class: ["task", `status-${task.status}`] },
    h(
      "div",
      { class: "task-check" },
      done,
      h("label", { for: doneId, class: "visually-hidden" }, `Completed: ${task.title}`),
    ),
    h(
      "div",
      { class: "task-main" },
      h("a", { href: `/tasks/${task.id}`, class: "task-title" }, task.title),
      task.description ? h("p", { class: "task-description" }, task.description) : null,
      h(
        "div",
        { class: "task-meta" },
        h("span", { class: ["badge", `priority-${task.priority}`] }, `${PRIORITY_LABELS[task.priority]} priority`),
        h("span", { class: ["badge", `status-badge-${task.status}`] }, STATUS_LABELS[task.status]),
        due,
        task.recurrence ? h("span", { class: "repeats" }, describeRule(task.recurrence)) : null,
        task.remind_at && task.status !== "completed"
          ? h(
              "span",
              { class: "reminder" },
              "Reminder ",
              h("time", { datetime: task.remind_at }, formatDateTime(task.remind_at)),
            )
          : null,
        categoryChips(task.categories),
      ),
    ),
    h(
      "div",
      { class: "task-actions" },
      h("a", { href: `/tasks/${task.id}`, class: "button small" }, "Edit", srOnly(` “${task.title}”`)),
      deleteButton,
    ),
  );
}

function pager(page, state, go) {
  if (!page.pages || page.pages <= 1) return null;
  const current = Number(state.page);
  const button = (label, target, disabled) =>
    h(
      "button",
      { type: "button", class: "button small", disabled: disabled, onClick: () => go(String(target)) },
      label,
    );
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    button("← Previous", current - 1, current <= 1),
    h("span", { "aria-current": "page" }, `Page ${current} of ${page.pages}`),
    button("Next →", current + 1, current >= page.pages),
  );
}

async function statusCounts() {
  try {
    return await api("GET", "/tasks/stats");
  } catch {
    return null;
  }
}

export async function taskList({ query, stillCurrent }) {
  setTitle("Tasks");
  const state = stateFrom(query);
  const categories = await loadCategories();
  if (!stillCurrent()) return null;

  const options = (labels) => [["", "Any"], ...Object.entries(labels)];
  const narrowScreen = !window.matchMedia("(min-width: 48rem)").matches;
  const anyFilter = ["status", "priority", "category_id", "due_from", "due_to"].some((key) => state[key]);
  const grid = h(
    "div",
    { class: "filter-grid" },
    field({ label: "Status", name: "status", type: "select", value: state.status, options: options(STATUS_LABELS) }),
    field({ label: "Priority", name: "priority", type: "select", value: state.priority, options: options(PRIORITY_LABELS) }),
    field({
      label: "Category",
      name: "category_id",
      type: "select",
      value: state.category_id,
      options: [["", "Any"], ...categories.map((category) => [category.id, category.name])],
    }),
    field({ label: "Due from", name: "due_from", type: "date", value: state.due_from }),
    field({ label: "Due until", name: "due_to", type: "date", value: state.due_to }),
    field({
      label: "Sort by",
      name: "sort_by",
      type: "select",
      value: state.sort_by,
      options: Object.entries(SORT_LABELS),
    }),
    field({
      label: "Order",
      name: "sort_order",
      type: "select",
      value: state.sort_order,
      options: [
        ["desc", "Descending"],
        ["asc", "Ascending"],
      ],
    }),
    field({
      label: "Per page",
      name: "limit",
      type: "select",
      value: state.limit,
      options: PAGE_SIZES.map((size) => [size, size]),
    }),
    h("div", { class: "filter-actions" }, h("button", { type: "reset", class: "button quiet" }, "Clear filters")),
  );
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Search, filter and sort tasks", novalidate: true },
    formError(),
    field({
      label: "Search",
      name: "q",
      type: "search",
      value: state.q,
      placeholder: "Title or description",
      maxlength: 200,
    }),
    h(
      "details",
      { class: "filter-panel", open: anyFilter || !narrowScreen },
      h("summary", {}, "Filters and sorting"),
      grid,
    ),
  );
  const counts = h("div", { class: "counts" });
  const summary = h("p", { class: "result-count", role: "status" });
  const list = h("ul", { class: "tasks", "aria-label": "Tasks" });
  const pages = h("div", { class: "pages" });

  const load = async () => {
    replaceQuery(urlParams(state));
    sessionStorage.setItem(LIST_URL_KEY, `${location.pathname}${location.search}`);
    clearErrors(filters);
    let page;
    try {
      [page] = await Promise.all([
        api("GET", "/tasks", { query: listQuery(state) }),
        refreshCounts(),
      ]);
    } catch (error) {
      if (error instanceof ApiError && error.status === 400) {
        showProblem(filters, error, {
          aliases: { due_date_from: "due_from", due_date_to: "due_to" },
          focus: false,
        });
        list.replaceChildren();
        summary.textContent = "";
        pages.replaceChildren();
        return;
      }
      throw error;
    }
    if (page.items.length === 0 && Number(state.page) > 1 && page.pages > 0) {
      state.page = String(page.pages);
      await load();
      return;
    }
    const first = (page.page - 1) * page.limit + 1;
    summary.textContent = page.total
      ? `Showing ${first}–${first + page.items.length - 1} of ${plural(page.total, "task")}`
      : filtered()
        ? "No tasks match these filters."
        : "No tasks yet. Create your first one!";
    list.replaceChildren(...page.items.map((task) => taskItem(task, reload)));
    pages.replaceChildren(
      pager(page, state, async (target) => {
        state.page = target;
        await reload();
        summary.focus();
      }) || "",
    );
  };

  const refreshCounts = async () => {
    const stats = await statusCounts();
    if (!stats) return;
    const total = Object.values(stats.by_status).reduce((sum, value) => sum + value, 0);
    counts.replaceChildren(
      h(
        "dl",
        { class: "count-list" },
        [
          ["All", total],
          ...Object.entries(STATUS_LABELS).map(([key, label]) => [label, stats.by_status[key]]),
          ["Overdue", stats.overdue],
        ].map(([label, value]) => h("div", { class: "count" }, h("dt", {}, label), h("dd", {}, String(value)))),
      ),
    );
  };

  const filtered = () => ["q", "status", "priority", "category_id", "due_from", "due_to"].some((key) => state[key]);

  const reload = () => load().catch((error) => toast(describeProblem(error), { kind: "error" }));
  let searchTimer = null;
  const changed = (control) => {
    state[control.name] = control.value;
    state.page = "1";
    reload();
  };
  filters.addEventListener("change", (event) => {
    if (event.target.name && event.target.name !== "q") changed(event.target);
  });
  filters.addEventListener("input", (event) => {
    if (event.target.name !== "q") return;
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => changed(event.target), SEARCH_DELAY_MS);
  });
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(searchTimer);
    changed(filters.elements.q);
  });
  filters.addEventListener("reset", (event) => {
    event.preventDefault();
    for (const key of FILTER_KEYS) state[key] = DEFAULTS[key] || "";
    state.page = "1";
    for (const control of filters.elements) {
      if (control.name) control.value = state[control.name] ?? "";
    }
    load();
  });

  summary.tabIndex = -1;
  await load();
  if (!stillCurrent()) return null;
  return h(
    "section",
    { class: "tasks-screen" },
    h(
      "div",
      { class: "screen-head" },
      h("h1", { tabindex: "-1" }, "Tasks"),
      h("a", { href: "/tasks/new", class: "button primary" }, "New task"),
    ),
    counts,
    filters,
    summary,
    list,
    pages,
  );
}

/** The list as last shown (filters, sort, page), to come back to after an edit. */
export function listUrl() {
  return sessionStorage.getItem(LIST_URL_KEY) || "/tasks";
}

export function backToList() {
  return navigate(listUrl());
}
