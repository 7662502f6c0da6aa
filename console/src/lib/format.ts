// Formatting of money, dates and durations. Money stays a decimal string
// from end to end (never a float); times are shown in the browser's zone
// unless one is given.
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";

const MONEY = /^(-)?(\d+)(?:\.(\d+))?$/;

/**
 * An exact decimal amount for display: thousands grouped, at least two
 * decimals, further decimals kept when they are not zero ("0.0012"),
 * optional currency code after it. Anything not a decimal is shown as it
 * is, so a surprise is visible instead of silently wrong.
 */
export function formatMoney(amount: string | undefined, currency?: string): string {
  if (amount === undefined || amount === "") return "";
  const m = MONEY.exec(amount.trim());
  if (!m) return amount;
  const [, minus, whole, frac = ""] = m;
  let decimals = frac.replace(/0+$/, "");
  if (decimals.length < 2) decimals = decimals.padEnd(2, "0");
  const int = whole.replace(/^0+(?=\d)/, "").replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const zero = /^0*$/.test(whole) && /^0*$/.test(frac);
  const text = `${minus && !zero ? "-" : ""}${int}.${decimals}`;
  return currency ? `${text} ${currency}` : text;
}

/** A decimal input as the API takes it ("12.5", "-3"), or null when not one. */
export function parseAmount(input: string): string | null {
  const s = input.trim().replace(/,/g, "");
  return /^-?\d+(\.\d+)?$/.test(s) ? s : null;
}

function parts(date: Date, timeZone?: string): Record<string, string> {
  const f = new Intl.DateTimeFormat("en-GB", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
  return Object.fromEntries(f.formatToParts(date).map((p) => [p.type, p.value]));
}

export function toDate(ts: Timestamp | undefined): Date | undefined {
  if (!ts) return undefined;
  return new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000));
}

/** "2026-11-01 14:03:05", or "" for an unset time. */
export function formatDateTime(ts: Timestamp | Date | undefined, timeZone?: string): string {
  const d = ts instanceof Date ? ts : toDate(ts);
  if (!d) return "";
  const p = parts(d, timeZone);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
}

/** "2026-11-01", or "" for an unset time. */
export function formatDate(ts: Timestamp | Date | undefined, timeZone?: string): string {
  return formatDateTime(ts, timeZone).slice(0, 10);
}

/**
 * A duration for people: "0 ms", "850 ms", "1.25 s", "2 min 5 s",
 * "1 h 2 min", "3 d 4 h". Takes a protobuf Duration or milliseconds.
 */
export function formatDuration(d: Duration | number | undefined): string {
  if (d === undefined) return "";
  const ms =
    typeof d === "number" ? d : Number(d.seconds) * 1000 + Math.round(d.nanos / 1_000_000);
  const sign = ms < 0 ? "-" : "";
  const abs = Math.abs(ms);
  if (abs < 1000) return `${sign}${Math.round(abs)} ms`;
  if (abs < 60_000) {
    const s = (abs / 1000).toFixed(2).replace(/\.?0+$/, "");
    return `${sign}${s} s`;
  }
  const total = Math.floor(abs / 1000);
  const days = Math.floor(total / 86_400);
  const hours = Math.floor((total % 86_400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  if (days > 0) return `${sign}${days} d${hours ? ` ${hours} h` : ""}`;
  if (hours > 0) return `${sign}${hours} h${minutes ? ` ${minutes} min` : ""}`;
  return `${sign}${minutes} min${seconds ? ` ${seconds} s` : ""}`;
}

/** "YYYY-MM-DD" of a date in the browser's zone (date inputs). */
export function isoDay(d: Date): string {
  const p = parts(d);
  return `${p.year}-${p.month}-${p.day}`;
}

/** The start (00:00) or the end (next day's 00:00) of a "YYYY-MM-DD" day, local time. */
export function dayBound(day: string, end: boolean): Date | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  if (!m) return undefined;
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + (end ? 1 : 0));
  return d;
}

/** "2 users", "1 user". */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** "SOME_REASON" -> "Some reason". */
export function humanize(code: string): string {
  const words = code.toLowerCase().replace(/_/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}
