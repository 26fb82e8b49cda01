// Dates and labels as people read them, in their own time zone and locale.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const time = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

export const STATUS_LABELS = { pending: "Pending", in_progress: "In progress", completed: "Completed" };
export const PRIORITY_LABELS = { low: "Low", medium: "Medium", high: "High" };
export const SORT_LABELS = {
  created_at: "Created",
  updated_at: "Updated",
  due_date: "Due date",
  priority: "Priority",
  title: "Title",
  status: "Status",
};

export function formatDateTime(iso) {
  return iso ? dateTime.format(new Date(iso)) : "";
}

export function formatDate(iso) {
  return iso ? dateOnly.format(new Date(iso)) : "";
}

export function formatTime(iso) {
  return iso ? time.format(new Date(iso)) : "";
}

/** "in 5 minutes", "3 days ago". */
export function fromNow(iso) {
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  const steps = [
    [60, "second"],
    [60, "minute"],
    [24, "hour"],
    [30, "day"],
    [12, "month"],
    [Infinity, "year"],
  ];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return "";
}

function pad(number) {
  return String(number).padStart(2, "0");
}

/** An ISO instant as the value of <input type="datetime-local"> in the local zone. */
export function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The value of a datetime-local input as an ISO instant (null when empty). */
export function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? value : d.toISOString();
}

/** A yyyy-mm-dd <input type="date"> value as the first or last instant of that local day. */
export function dayBoundary(value, end) {
  if (!value) return null;
  const [year, month, day] = value.split("-").map(Number);
  const d = end ? new Date(year, month - 1, day, 23, 59, 59, 999) : new Date(year, month - 1, day);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** The browser's IANA zone, e.g. Europe/Berlin. */
export function timeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

export function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

const FREQUENCY_WORDS = {
  DAILY: ["day", "days"],
  WEEKLY: ["week", "weeks"],
  MONTHLY: ["month", "months"],
  YEARLY: ["year", "years"],
};
const DAY_NAMES = { MO: "Mon", TU: "Tue", WE: "Wed", TH: "Thu", FR: "Fri", SA: "Sat", SU: "Sun" };

/** An RRULE in words: "Every 2 weeks on Mon, Wed, 10 times". Unknown shapes stay as given. */
export function describeRule(rule) {
  if (!rule) return "";
  const parts = Object.fromEntries(
    rule.split(";").map((piece) => piece.split("=").map((text) => text.trim().toUpperCase())),
  );
  const words = FREQUENCY_WORDS[parts.FREQ];
  if (!words) return rule;
  const every = Number(parts.INTERVAL || 1);
  const text = [every > 1 ? `Every ${every} ${words[1]}` : `Every ${words[0]}`];
  if (parts.BYDAY) {
    text.push(`on ${parts.BYDAY.split(",").map((day) => DAY_NAMES[day] || day).join(", ")}`);
  }
  if (parts.BYMONTHDAY) text.push(`on day ${parts.BYMONTHDAY}`);
  let described = text.join(" ");
  if (parts.COUNT) described += `, ${plural(Number(parts.COUNT), "time")}`;
  const until = /^(\d{4})(\d{2})(\d{2})/.exec(parts.UNTIL || "");
  if (until) described += `, until ${dateOnly.format(new Date(`${until[1]}-${until[2]}-${until[3]}T12:00:00`))}`;
  return described;
}
