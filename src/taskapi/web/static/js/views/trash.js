// Deleted tasks (GET /tasks?deleted=true), newest deletion first, each with Restore.

import { api, ApiError } from "../api.js";
import { h, srOnly } from "../dom.js";
import { describeProblem } from "../forms.js";
import { formatDateTime, fromNow, plural } from "../format.js";
import { announce, toast } from "../notices.js";
import { setTitle } from "../router.js";

const PAGE_SIZE = 20;

export async function trash({ stillCurrent }) {
  setTitle("Trash");
  const list = h("ul", { class: "tasks trash", "aria-label": "Deleted tasks" });
  const summary = h("p", { class: "result-count", role: "status", tabindex: "-1" });
  const pages = h("div", { class: "pages" });
  let page = 1;

  const load = async () => {
    const answer = await api("GET", "/tasks", { query: { deleted: "true", page, limit: PAGE_SIZE } });
    if (!answer.items.length && page > 1) {
      page -= 1;
      return load();
    }
    summary.textContent = answer.total
      ? `${plural(answer.total, "deleted task")}. Deleted tasks are removed for good after a while.`
      : "The trash is empty.";
    list.replaceChildren(
      ...answer.items.map((task) => {
        const restore = h(
          "button",
          { type: "button", class: "button small" },
          "Restore",
          srOnly(` “${task.title}”`),
        );
        restore.addEventListener("click", async () => {
          restore.disabled = true;
          try {
            await api("POST", `/tasks/${task.id}/restore`);
            toast(`Restored “${task.title}”.`);
            announce(`Restored “${task.title}”.`);
            await load();
          } catch (error) {
            if (error instanceof ApiError && error.status === 404) {
              // Restored elsewhere meanwhile, or purged: the list catches up.
              toast(`“${task.title}” is no longer in the trash.`, { kind: "error" });
              await load();
              return;
            }
            restore.disabled = false;
            toast(describeProblem(error), { kind: "error" });
          }
        });
        return h(
          "li",
          { class: "task" },
          h(
            "div",
            { class: "task-main" },
            h("span", { class: "task-title" }, task.title),
            h(
              "p",
              { class: "task-meta" },
              h(
                "span",
                {},
                "Deleted ",
                h("time", { datetime: task.deleted_at, title: formatDateTime(task.deleted_at) }, fromNow(task.deleted_at)),
              ),
            ),
          ),
          h("div", { class: "task-actions" }, restore),
        );
      }),
    );
    pages.replaceChildren();
    if (answer.pages > 1) {
      const go = (target) => async () => {
        page = target;
        await load();
        summary.focus();
      };
      pages.append(
        h(
          "nav",
          { class: "pager", "aria-label": "Pages" },
          h("button", { type: "button", class: "button small", disabled: page <= 1, onClick: go(page - 1) }, "← Previous"),
          h("span", {}, `Page ${page} of ${answer.pages}`),
          h("button", { type: "button", class: "button small", disabled: page >= answer.pages, onClick: go(page + 1) }, "Next →"),
        ),
      );
    }
    return answer;
  };

  await load();
  if (!stillCurrent()) return null;
  return h(
    "section",
    { class: "trash-screen" },
    h("div", { class: "screen-head" }, h("h1", { tabindex: "-1" }, "Trash")),
    summary,
    list,
    pages,
  );
}
