// The dashboard: GET /tasks/stats in the browser's time zone, as numbers and charts.

import { api, ApiError } from "../api.js";
import { barChart, columnChart } from "../charts.js";
import { h } from "../dom.js";
import { PRIORITY_LABELS, STATUS_LABELS, timeZone } from "../format.js";
import { setTitle } from "../router.js";

function card(label, value, { href = null, alert = false } = {}) {
  const number = h("span", { class: "card-value" }, String(value));
  const body = [number, h("span", { class: "card-label" }, label)];
  return h(
    "li",
    { class: ["card", alert && value > 0 && "card-alert"] },
    href ? h("a", { href, class: "card-link" }, body) : body,
  );
}

function isoDay(date) {
  const pad = (number) => String(number).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** About the width a chart gets on this screen (panel padding taken off), so its text is
 * drawn near its real size instead of being scaled with the picture. */
function chartWidth(columns) {
  const content = Math.min(window.innerWidth, 1152) - 2 * 16 - 2 * 17;
  const perColumn = columns === 2 && window.innerWidth >= 768 ? (content - 16 - 34) / 2 : content;
  return Math.round(Math.max(280, perColumn));
}

export async function dashboard({ stillCurrent }) {
  setTitle("Dashboard");
  let zone = timeZone();
  let stats;
  try {
    stats = await api("GET", "/tasks/stats", { query: { tz: zone } });
  } catch (error) {
    // A zone the server's tz database does not know yet: count days in UTC, and say so.
    if (!(error instanceof ApiError) || !error.errors.some((item) => item.field === "tz")) throw error;
    zone = "UTC";
    stats = await api("GET", "/tasks/stats", { query: { tz: zone } });
  }
  if (!stillCurrent()) return null;
  const open = stats.by_status.pending + stats.by_status.in_progress;
  const completedRecently = stats.completed_per_day.reduce((sum, day) => sum + day.count, 0);
  const today = new Date();
  const inAWeek = new Date(today.getFullYear(), today.getMonth(), today.getDate() + 6);
  const charts = h("div", { class: "charts" });
  const drawCharts = () => {
    charts.replaceChildren(
      h(
        "div",
        { class: "chart-grid-2" },
        barChart({
          title: "Tasks by status",
          width: chartWidth(2),
          rows: Object.entries(STATUS_LABELS).map(([key, label]) => ({
            label,
            value: stats.by_status[key],
            className: `bar-${key}`,
          })),
        }),
        barChart({
          title: "Tasks by priority",
          width: chartWidth(2),
          rows: Object.entries(PRIORITY_LABELS).map(([key, label]) => ({
            label,
            value: stats.by_priority[key],
            className: `bar-${key}`,
          })),
        }),
      ),
      columnChart({
        title: "Completed per day, last 30 days",
        points: stats.completed_per_day,
        width: chartWidth(1),
      }),
    );
  };
  drawCharts();
  // Text in the charts is drawn at its size on screen, so a new width redraws them.
  let resizeTimer = null;
  const onResize = () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (charts.isConnected) drawCharts();
      else window.removeEventListener("resize", onResize);
    }, 150);
  };
  window.addEventListener("resize", onResize);
  return h(
    "div",
    { class: "dashboard" },
    h(
      "div",
      { class: "screen-head" },
      h("h1", { tabindex: "-1" }, "Dashboard"),
      h("p", { class: "hint" }, `Days in ${zone}`),
    ),
    h(
      "ul",
      { class: "cards", "aria-label": "Summary" },
      card("Open tasks", open, { href: "/tasks" }),
      card("Overdue", stats.overdue, { alert: true }),
      card("Due today", stats.due_today, { href: `/tasks?due_from=${isoDay(today)}&due_to=${isoDay(today)}` }),
      card("Due in the next 7 days", stats.due_next_7_days, {
        href: `/tasks?due_from=${isoDay(today)}&due_to=${isoDay(inAWeek)}&sort_by=due_date&sort_order=asc`,
      }),
      card("Completed in 30 days", completedRecently),
    ),
    charts,
  );
}
