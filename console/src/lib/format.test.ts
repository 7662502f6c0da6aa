import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { DurationSchema, TimestampSchema } from "@bufbuild/protobuf/wkt";
import {
  dayBound,
  formatDate,
  formatDateTime,
  formatDuration,
  formatMoney,
  humanize,
  parseAmount,
} from "./format";

describe("formatMoney", () => {
  it("keeps at least two decimals and groups thousands", () => {
    expect(formatMoney("25")).toBe("25.00");
    expect(formatMoney("25.5")).toBe("25.50");
    expect(formatMoney("1234567.8900")).toBe("1,234,567.89");
    expect(formatMoney("100", "USD")).toBe("100.00 USD");
  });
  it("never loses precision a float would", () => {
    expect(formatMoney("0.1000000000000000055511")).toBe("0.1000000000000000055511");
    expect(formatMoney("9007199254740993.01")).toBe("9,007,199,254,740,993.01");
    expect(formatMoney("0.0012")).toBe("0.0012");
  });
  it("signs, zeros and leading zeros", () => {
    expect(formatMoney("-12.3400")).toBe("-12.34");
    expect(formatMoney("-0.00")).toBe("0.00");
    expect(formatMoney("0007.1")).toBe("7.10");
    expect(formatMoney("0")).toBe("0.00");
  });
  it("shows what is not a decimal as it is, and nothing for nothing", () => {
    expect(formatMoney("abc")).toBe("abc");
    expect(formatMoney(undefined)).toBe("");
    expect(formatMoney("")).toBe("");
  });
  it("parses amounts typed by people", () => {
    expect(parseAmount(" 1,250.50 ")).toBe("1250.50");
    expect(parseAmount("12.")).toBeNull();
    expect(parseAmount("1e3")).toBeNull();
    expect(parseAmount("")).toBeNull();
  });
});

describe("dates", () => {
  const ts = create(TimestampSchema, { seconds: 1_793_541_785n, nanos: 999_000_000 });
  it("formats a timestamp in a zone, to the second", () => {
    expect(formatDateTime(ts, "UTC")).toBe("2026-11-01 14:03:05");
    expect(formatDateTime(ts, "Asia/Tokyo")).toBe("2026-11-01 23:03:05");
    expect(formatDate(ts, "America/Los_Angeles")).toBe("2026-11-01");
  });
  it("midnight is 00, not 24", () => {
    expect(formatDateTime(new Date(Date.UTC(2026, 0, 2, 0, 0, 0)), "UTC")).toBe("2026-01-02 00:00:00");
  });
  it("unset is empty", () => {
    expect(formatDateTime(undefined)).toBe("");
  });
  it("a day's bounds are its midnight and the next", () => {
    const start = dayBound("2026-02-28", false)!;
    const end = dayBound("2026-02-28", true)!;
    expect(end.getTime() - start.getTime()).toBeGreaterThanOrEqual(23 * 3600_000);
    expect(end.getDate()).toBe(1);
    expect(end.getMonth()).toBe(2);
    expect(dayBound("28/02/2026", false)).toBeUndefined();
  });
});

describe("formatDuration", () => {
  const d = (seconds: bigint, nanos = 0) => create(DurationSchema, { seconds, nanos });
  it("sub-second in milliseconds", () => {
    expect(formatDuration(d(0n, 0))).toBe("0 ms");
    expect(formatDuration(d(0n, 850_400_000))).toBe("850 ms");
  });
  it("seconds with up to two decimals", () => {
    expect(formatDuration(d(1n, 250_000_000))).toBe("1.25 s");
    expect(formatDuration(d(2n))).toBe("2 s");
  });
  it("minutes, hours and days", () => {
    expect(formatDuration(d(125n))).toBe("2 min 5 s");
    expect(formatDuration(d(120n))).toBe("2 min");
    expect(formatDuration(d(3725n))).toBe("1 h 2 min");
    expect(formatDuration(d(273_600n))).toBe("3 d 4 h");
    expect(formatDuration(30 * 60_000)).toBe("30 min");
  });
  it("negative and unset", () => {
    expect(formatDuration(-1500)).toBe("-1.5 s");
    expect(formatDuration(undefined)).toBe("");
  });
});

describe("humanize", () => {
  it("turns a reason into words", () => {
    expect(humanize("INSUFFICIENT_FUNDS")).toBe("Insufficient funds");
  });
});
