// Building DOM from elements, never from HTML strings: text always goes in as text, so
// nothing a user typed can become markup, and nothing here needs 'unsafe-inline' under the
// page's CSP.

const SVG_NS = "http://www.w3.org/2000/svg";
let nextId = 0;

/** A fresh id for label/aria wiring. */
export function uid(prefix = "id") {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

function applyAttributes(element, attributes) {
  const late = {};
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") {
      element.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "value" || name === "checked" || name === "selected") {
      late[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  return late;
}

/** Append children: strings become text nodes; null, false and undefined are skipped. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** h("button", {class: "primary", onClick}, "Save") */
export function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  const late = applyAttributes(element, attributes);
  append(element, children);
  // Set after the children exist, so a <select>'s value can pick one of its options.
  for (const [name, value] of Object.entries(late)) element[name] = value;
  return element;
}

/** The same for SVG elements (charts, swatches). */
export function s(tag, attributes, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  applyAttributes(element, attributes);
  append(element, children);
  return element;
}

export function clear(element) {
  element.replaceChildren();
  return element;
}

/** A small coloured dot for a category, drawn in SVG so the colour needs no style attribute. */
export function swatch(color, size = 12) {
  return s(
    "svg",
    {
      class: "swatch",
      width: size,
      height: size,
      viewBox: "0 0 12 12",
      "aria-hidden": "true",
      focusable: "false",
    },
    s("circle", { cx: 6, cy: 6, r: 5.5, fill: color }),
  );
}

/** Text only screen readers get. */
export function srOnly(text) {
  return h("span", { class: "visually-hidden" }, text);
}
