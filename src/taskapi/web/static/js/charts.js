// Hand-drawn SVG charts. Colours come from CSS classes (so light and dark both work), each
// chart is an image with a text alternative, and its numbers are also a table.

import { h, s, uid } from "./dom.js";

const shortDay = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const longDay = new Intl.DateTimeFormat(undefined, { weekday: "short", month: "short", day: "numeric" });

function dayOf(isoDate) {
  const [year, month, day] = isoDate.split("-").map(Number);
  return new Date(year, month - 1, day);
}

function dataTable(caption, headings, rows) {
  return h(
    "details",
    { class: "chart-data" },
    h("summary", {}, "Show the numbers"),
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, headings.map((text) => h("th", { scope: "col" }, text)))),
      h(
        "tbody",
        {},
        rows.map(([label, value]) => h("tr", {}, h("th", { scope: "row" }, label), h("td", {}, String(value)))),
      ),
    ),
  );
}

function figure(title, svg, table) {
  return h("figure", { class: "chart" }, h("figcaption", {}, title), svg, table);
}

/** Horizontal bars: rows = [{label, value, className}]; `width` ≈ its width on screen, so
 * text is drawn at its real size. */
export function barChart({ title, rows, width = 320 }) {
  const rowHeight = 30;
  const labelWidth = 96;
  const barSpace = width - labelWidth - 44;
  const max = Math.max(1, ...rows.map((row) => row.value));
  const titleId = uid("chart");
  const summary = rows.map((row) => `${row.label}: ${row.value}`).join(", ");
  const svg = s(
    "svg",
    {
      viewBox: `0 0 ${width} ${rows.length * rowHeight + 4}`,
      role: "img",
      "aria-labelledby": titleId,
      class: "chart-svg",
    },
    s("title", { id: titleId }, `${title}. ${summary}`),
    rows.map((row, index) => {
      const y = index * rowHeight + 4;
      const barWidth = row.value ? Math.max(3, (row.value / max) * barSpace) : 0;
      return s(
        "g",
        {},
        s("text", { x: 0, y: y + 17, class: "chart-label" }, row.label),
        s("rect", { x: labelWidth, y: y + 3, width: barSpace, height: 20, rx: 4, class: "chart-track" }),
        s("rect", { x: labelWidth, y: y + 3, width: barWidth, height: 20, rx: 4, class: ["chart-bar", row.className] }),
        s("text", { x: labelWidth + barWidth + 6, y: y + 17, class: "chart-value" }, String(row.value)),
      );
    }),
  );
  return figure(
    title,
    svg,
    dataTable(title, ["", "Tasks"], rows.map((row) => [row.label, row.value])),
  );
}

function niceMax(value) {
  if (value <= 4) return 4;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const factor of [1, 2, 2.5, 5, 10]) {
    if (factor * step >= value) return factor * step;
  }
  return value;
}

/** One column per day: points = [{date: "2030-01-31", count}], oldest first. */
export function columnChart({ title, points, width = 640 }) {
  const height = 200;
  const left = 34;
  const bottom = 26;
  const top = 10;
  const plotWidth = width - left - 6;
  const plotHeight = height - top - bottom;
  const max = niceMax(Math.max(0, ...points.map((point) => point.count)));
  const slot = plotWidth / Math.max(points.length, 1);
  const titleId = uid("chart");
  const total = points.reduce((sum, point) => sum + point.count, 0);
  const busiest = points.reduce((best, point) => (point.count > (best?.count ?? -1) ? point : best), null);
  const summary = busiest && busiest.count
    ? `${total} in ${points.length} days; most on ${longDay.format(dayOf(busiest.date))} (${busiest.count}).`
    : `None in the last ${points.length} days.`;
  const ticks = [0, max / 2, max];
  const svg = s(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": titleId, class: "chart-svg" },
    s("title", { id: titleId }, `${title}. ${summary}`),
    ticks.map((tick) => {
      const y = top + plotHeight - (tick / max) * plotHeight;
      return s(
        "g",
        {},
        s("line", { x1: left, x2: width - 4, y1: y, y2: y, class: "chart-grid" }),
        s("text", { x: left - 6, y: y + 4, class: "chart-axis", "text-anchor": "end" }, String(tick)),
      );
    }),
    points.map((point, index) => {
      const barHeight = (point.count / max) * plotHeight;
      const x = left + index * slot + 1.5;
      const label = `${longDay.format(dayOf(point.date))}: ${point.count} completed`;
      return s(
        "g",
        {},
        s(
          "rect",
          {
            x,
            y: top + plotHeight - barHeight,
            width: Math.max(slot - 3, 1),
            height: barHeight,
            rx: 2,
            class: "chart-bar bar-done",
          },
          s("title", {}, label),
        ),
        (points.length - 1 - index) % 7 === 0
          ? s(
              "text",
              {
                x: index === points.length - 1 ? x + slot - 3 : x + (slot - 3) / 2,
                y: height - 8,
                class: "chart-axis",
                "text-anchor": index === points.length - 1 ? "end" : "middle",
              },
              shortDay.format(dayOf(point.date)),
            )
          : null,
      );
    }),
  );
  return figure(
    title,
    svg,
    dataTable(
      title,
      ["Day", "Completed"],
      points.map((point) => [longDay.format(dayOf(point.date)), point.count]),
    ),
  );
}
