// Categories: create, rename, recolour, delete.

import { api } from "../api.js";
import { h, srOnly, swatch } from "../dom.js";
import { busy, clearErrors, describeProblem, field, formError, showProblem, values } from "../forms.js";
import { plural } from "../format.js";
import { announce, confirmDialog, toast } from "../notices.js";
import { setTitle } from "../router.js";

const DEFAULT_COLOR = "#6366F1";
const NAME_EXISTS = ["name", "You already have a category with this name."];

function categoryFields(category) {
  return [
    field({
      label: "Name",
      name: "name",
      value: category?.name,
      required: true,
      maxlength: 50,
      hint: category ? null : "3–50 characters.",
      autocomplete: "off",
    }),
    field({ label: "Colour", name: "color", type: "color", value: (category?.color || DEFAULT_COLOR).toLowerCase() }),
  ];
}

export async function categories({ stillCurrent }) {
  setTitle("Categories");
  const list = h("ul", { class: "categories", "aria-label": "Your categories" });
  const summary = h("p", { class: "result-count", role: "status" });

  const load = async () => {
    const answer = await api("GET", "/categories");
    summary.textContent = answer.total
      ? plural(answer.total, "category", "categories")
      : "No categories yet: create one to group your tasks.";
    list.replaceChildren(...answer.items.map((category) => row(category)));
  };

  const row = (category) => {
    const item = h("li", { class: "category" });
    const showRead = () => {
      const edit = h("button", { type: "button", class: "button small" }, "Edit", srOnly(` ${category.name}`));
      const remove = h("button", { type: "button", class: "button small danger-quiet" }, "Delete", srOnly(` ${category.name}`));
      edit.addEventListener("click", showEdit);
      remove.addEventListener("click", async () => {
        const sure = await confirmDialog({
          title: `Delete “${category.name}”?`,
          body: "Its tasks stay; they just lose this category.",
          confirm: "Delete category",
          danger: true,
        });
        if (!sure) return;
        try {
          await api("DELETE", `/categories/${category.id}`);
          toast(`Deleted “${category.name}”.`);
          await load();
          (list.querySelector("button") || summary).focus();
        } catch (error) {
          toast(describeProblem(error), { kind: "error" });
        }
      });
      item.replaceChildren(
        h(
          "div",
          { class: "category-name" },
          swatch(category.color, 16),
          h("a", { href: `/tasks?category_id=${category.id}` }, category.name),
          h("span", { class: "hint" }, category.color),
        ),
        h("div", { class: "task-actions" }, edit, remove),
      );
      return edit;
    };
    const showEdit = () => {
      const form = h(
        "form",
        { class: "inline-form", novalidate: true, "aria-label": `Edit ${category.name}` },
        formError(),
        ...categoryFields(category),
        h(
          "div",
          { class: "actions" },
          h("button", { type: "submit", class: "button primary small" }, "Save"),
          h("button", { type: "button", class: "button small quiet", onClick: () => showRead().focus() }, "Cancel"),
        ),
      );
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        clearErrors(form);
        const { name, color } = values(form);
        const changes = {};
        if (name !== category.name) changes.name = name;
        if (color.toUpperCase() !== category.color) changes.color = color.toUpperCase();
        try {
          if (Object.keys(changes).length) {
            Object.assign(category, await busy(form, () => api("PATCH", `/categories/${category.id}`, { body: changes })));
            announce(`Saved “${category.name}”.`);
          }
          showRead().focus();
        } catch (error) {
          showProblem(form, error, { codes: { category_exists: NAME_EXISTS } });
        }
      });
      item.replaceChildren(form);
      form.elements.name.focus();
    };
    showRead();
    return item;
  };

  const create = h(
    "form",
    { class: "inline-form create", novalidate: true, "aria-labelledby": "new-category" },
    h("h2", { id: "new-category" }, "New category"),
    formError(),
    ...categoryFields(null),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button primary" }, "Add category")),
  );
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(create);
    const { name, color } = values(create);
    try {
      const made = await busy(create, () => api("POST", "/categories", { body: { name, color: color.toUpperCase() } }), "Adding…");
      create.elements.name.value = "";
      toast(`Added “${made.name}”.`);
      await load();
      create.elements.name.focus();
    } catch (error) {
      showProblem(create, error, { codes: { category_exists: NAME_EXISTS } });
    }
  });

  await load();
  if (!stillCurrent()) return null;
  return h(
    "section",
    { class: "categories-screen" },
    h("div", { class: "screen-head" }, h("h1", { tabindex: "-1" }, "Categories")),
    h("div", { class: "panel" }, create),
    summary,
    list,
  );
}
