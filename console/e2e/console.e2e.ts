// The admin console in a real browser against a real `steward up`: every
// scenario of issue 15's Tests section. Screenshots go to test-results/.
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import type { BrowserContext, Page } from "playwright-core";
import ExcelJS from "exceljs";
import { readdirSync, readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { eventually, launch, shot } from "./browser";
import { results } from "./steward";
import { totp } from "./totp";

const s = inject("seeded");
let context: BrowserContext;
let close: () => Promise<void>;
let page: Page;

const users = () => page.getByRole("table", { name: "Users" });
const rowOf = (email: string) => users().locator("tbody tr", { hasText: email });

async function open(path: string) {
  await page.goto(s.gateway + path);
}

async function usersShown(): Promise<string[]> {
  await users().locator("tbody tr").first().waitFor();
  await page.getByText("Loading users…").waitFor({ state: "detached" });
  return users().locator("tbody tr td:nth-child(3)").allInnerTexts();
}

async function menu(name: string, item: string) {
  await page.locator("summary", { hasText: name }).click();
  await page.locator(".menu-items button", { hasText: item }).click();
}

async function closeResults(): Promise<string[]> {
  const dialog = page.getByRole("dialog").filter({ has: page.getByRole("table", { name: "Results" }) });
  await dialog.waitFor();
  const rows = await dialog.locator("tbody tr").allInnerTexts();
  return rows;
}

beforeAll(async () => {
  ({ context, close } = await launch());
  page = await context.newPage();
});

afterEach(async (ctx) => {
  if (ctx.task.result?.state === "fail") await shot(page, `failed-${ctx.task.name.replace(/\W+/g, "-")}`);
});

afterAll(async () => {
  await close?.();
});

describe("the admin console", () => {
  it("signs in with email, password and a TOTP code", async () => {
    await open("/users");
    await page.getByLabel("Email", { exact: true }).fill(s.admin.email);
    await page.getByLabel("Password").fill(s.admin.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    // The right password alone is the TOTP_REQUIRED step.
    const code = page.getByLabel("Two-factor code");
    await code.waitFor();
    await shot(page, "01-sign-in-totp");
    // A code is good once: wait out the step whose code confirmed enrollment.
    while (Math.floor(Date.now() / 30_000) <= s.admin.totpUsedStep) await new Promise((r) => setTimeout(r, 500));
    await code.fill(totp(s.admin.totpSecret));
    await page.getByRole("button", { name: "Verify" }).click();
    const shown = await usersShown();
    expect(shown.join(" ")).toContain("ann@console.e2e");
    expect(await page.getByTestId("who").innerText()).toBe(s.admin.email);
    // Balances come from billing: dan was refilled 40 by the seed.
    expect(await rowOf("dan@console.e2e").locator("td:nth-child(6)").innerText()).toBe("40.00");
    await shot(page, "02-users");
  });

  it("finds a user by email and by UID", async () => {
    await open("/users");
    await page.getByLabel("Email or UID").fill("CAT@console");
    await page.getByRole("button", { name: "Search" }).click();
    await expect.poll(usersShown).toEqual(["cat@console.e2e"]);
    expect(page.url()).toContain("q=CAT%40console");

    await page.getByLabel("Email or UID").fill(s.users.dan.id);
    await page.getByRole("button", { name: "Search" }).click();
    await expect.poll(usersShown).toEqual(["dan@console.e2e"]);
    await rowOf("dan@console.e2e").click();
    const frame = page.getByRole("region", { name: "User" });
    await frame.getByRole("heading", { name: "dan@console.e2e" }).waitFor();
    await expect.poll(() => frame.getByTestId("info-balance").innerText()).toContain("40.00 USD");
    expect(page.url()).toContain(`user=${s.users.dan.id}`);
    await shot(page, "03-user-info");
  });

  it("filters by group and status, and a reload keeps the view", async () => {
    await open("/users");
    await usersShown();
    await page.getByLabel("Group filter").selectOption("beta");
    await page.getByLabel("Status filter").selectOption("active");
    await expect.poll(usersShown).toEqual(["cat@console.e2e"]);
    expect(page.url()).toMatch(/group=beta/);
    expect(page.url()).toMatch(/status=active/);
    await page.reload();
    await expect.poll(usersShown).toEqual(["cat@console.e2e"]);
    expect(await page.getByLabel("Group filter").inputValue()).toBe("beta");
    expect(await page.getByLabel("Status filter").inputValue()).toBe("active");
    await page.getByLabel("Status filter").selectOption("suspended");
    await page.getByText("No users match").waitFor();
  });

  it("suspends two users at once and shows both results", async () => {
    await open("/users?group=trial");
    await usersShown();
    await page.getByLabel("Select ann@console.e2e").check();
    await page.getByLabel("Select bob@console.e2e").check();
    await page.getByText("2 users selected").waitFor();
    await menu("Change status", "Suspend");
    const dialog = page.getByRole("dialog", { name: "Suspend 2 users" });
    await dialog.getByText("ann@console.e2e, bob@console.e2e").waitFor();
    await dialog.getByLabel("Reason (recorded in the audit log)").fill("e2e: unpaid invoices");
    await dialog.getByRole("button", { name: "Suspend 2 users" }).click();
    const rows = await closeResults();
    expect(rows).toHaveLength(2);
    expect(rows.some((r) => r.includes("ann@console.e2e") && r.includes("Success") && r.includes("Suspended"))).toBe(true);
    expect(rows.some((r) => r.includes("bob@console.e2e") && r.includes("Success") && r.includes("Suspended"))).toBe(true);
    await shot(page, "04-suspend-results");
    await page.getByRole("button", { name: "Close", exact: true }).click();
    await page.getByLabel("Status filter").selectOption("suspended");
    await expect.poll(async () => (await usersShown()).sort()).toEqual(["ann@console.e2e", "bob@console.e2e"]);
    expect(await rowOf("ann@console.e2e").locator("[data-status]").getAttribute("data-status")).toBe("Suspended");
    // Suspending again is refused per user, in words.
    await page.getByLabel("Select ann@console.e2e").check();
    await menu("Change status", "Suspend");
    await page.getByRole("dialog", { name: "Suspend 1 user" }).getByRole("button", { name: "Suspend 1 user" }).click();
    const again = await closeResults();
    expect(again[0]).toContain("Refused");
    expect(again[0]).not.toMatch(/unknown/i);
    await page.getByRole("button", { name: "Close", exact: true }).click();
  });

  it("changes a group with a notification from a picked template", async () => {
    await open("/users?q=eve%40console");
    await expect.poll(usersShown).toEqual(["eve@console.e2e"]);
    await page.getByLabel("Select eve@console.e2e").check();
    await menu("Actions", "Change group");
    const dialog = page.getByRole("dialog", { name: "Change group of 1 user" });
    await dialog.getByLabel("User group").selectOption("billing");
    await dialog.getByText("Email notification").click();
    const picker = dialog.getByLabel("Email template");
    await expect.poll(() => picker.locator("option").count()).toBeGreaterThan(1);
    const template = await picker.locator("option").nth(1).getAttribute("value");
    await picker.selectOption(template!);
    await shot(page, "05-change-group");
    await dialog.getByRole("button", { name: "OK (1 user)" }).click();
    const rows = await closeResults();
    expect(rows[0]).toContain("Moved to billing, notified");
    await page.getByRole("button", { name: "Close", exact: true }).click();
    await expect.poll(() => rowOf("eve@console.e2e").locator("td:nth-child(5)").innerText()).toBe("billing");
    // The mail was rendered and handed to the (file) transport.
    const mailDir = join(s.dataDir, "mail");
    await eventually(async () => {
      const files = existsSync(mailDir) ? readdirSync(mailDir) : [];
      const texts = files.map((f) => readFileSync(join(mailDir, f), "utf8"));
      if (!texts.some((t) => t.includes("eve@console.e2e"))) throw new Error(`no mail to eve in ${mailDir}`);
    }, 60_000);
  });

  it("refills and withdraws, and shows the funding history and the balance change", async () => {
    await open(`/users?q=dan%40console&user=${s.users.dan.id}`);
    await expect.poll(usersShown).toEqual(["dan@console.e2e"]);
    const frame = page.getByRole("region", { name: "User" });
    await menu("Actions", "Refill balance");
    let dialog = page.getByRole("dialog", { name: "Refill balance (1 user)" });
    await dialog.getByLabel("Amount").fill("25.50");
    await dialog.getByLabel("Notes").fill("e2e refill");
    await dialog.getByRole("button", { name: "OK (1 user)" }).click();
    expect((await closeResults())[0]).toContain("Balance 65.50 USD");
    await page.getByRole("button", { name: "Close", exact: true }).click();

    await menu("Actions", "Withdraw funds");
    dialog = page.getByRole("dialog", { name: "Withdraw funds (1 user)" });
    await dialog.getByLabel("Amount").fill("1000");
    await dialog.getByRole("button", { name: "OK (1 user)" }).click();
    // A refusal is shown as what it means.
    await expect.poll(() => dialog.getByTestId("error").innerText()).toContain("Insufficient funds");
    await shot(page, "06-withdraw-refused");
    await dialog.getByLabel("Amount").fill("10");
    await dialog.getByLabel("Notes").fill("e2e withdrawal");
    await dialog.getByRole("button", { name: "OK (1 user)" }).click();
    expect((await closeResults())[0]).toContain("Balance 55.50 USD");
    await page.getByRole("button", { name: "Close", exact: true }).click();

    await expect.poll(() => rowOf("dan@console.e2e").locator("td:nth-child(6)").innerText()).toBe("55.50");
    await page.reload();
    await expect.poll(() => frame.getByTestId("info-balance").innerText()).toContain("55.50 USD");
    await frame.getByRole("tab", { name: "Funding history" }).click();
    const totals = frame.getByRole("table", { name: "Funding totals" });
    await expect.poll(() => totals.locator("tbody tr", { hasText: "Funding" }).first().innerText()).toMatch(/Funding\s+2\s+65\.50/);
    await expect.poll(() => totals.locator("tbody tr", { hasText: "Withdrawal" }).innerText()).toMatch(/Withdrawal\s+1\s+-10\.00/);
    const ops = frame.getByRole("table", { name: "Funding operations" });
    await ops.locator("tbody tr", { hasText: "e2e refill" }).waitFor();
    expect(await ops.locator("tbody tr", { hasText: "e2e withdrawal" }).innerText()).toMatch(/-10\.00\s+Withdrawal\s+Main\s+55\.50/);
    await shot(page, "07-funding-history");
  });

  it("edits a quota by double-click and resets it to the group value", async () => {
    await open(`/users?q=quinn%40console&user=${s.users.quinn.id}&tab=quotas`);
    const frame = page.getByRole("region", { name: "User" });
    const row = frame.locator('tr[data-key="environment.maxcount"]');
    await expect.poll(() => row.innerText()).toMatch(/environment\.maxcount.*\s2\s+Group\s+2/s);
    await frame.getByLabel("Search quotas").fill("maxcount");
    await frame.getByRole("button", { name: "Search" }).click();
    await expect.poll(() => frame.locator("tbody tr").count()).toBeLessThan(10);
    await row.dblclick();
    const dialog = page.getByRole("dialog", { name: "Edit environment.maxcount" });
    await dialog.getByLabel("Value").fill("7");
    await dialog.getByLabel("Reason").fill("e2e: larger project");
    await dialog.getByRole("button", { name: "Update" }).click();
    await expect.poll(() => row.innerText()).toMatch(/\s7\s+User override\s+2/);
    await shot(page, "08-quota-override");
    await row.click();
    await frame.getByRole("button", { name: "Reset to group value" }).click();
    await expect.poll(() => row.innerText()).toMatch(/\s2\s+Group\s+2/);
  });

  it("signs in as a user: banner, Stop, and the user's audit log names the impersonator", async () => {
    await open(`/users?q=ivy%40console&user=${s.users.ivy.id}`);
    const frame = page.getByRole("region", { name: "User" });
    await frame.getByRole("heading", { name: "ivy@console.e2e" }).waitFor();
    await frame.getByRole("button", { name: "Sign in as user" }).click();
    const dialog = page.getByRole("dialog", { name: "Sign in as user" });
    await dialog.getByLabel("Reason").fill("ticket 42");
    const [tab] = await Promise.all([context.waitForEvent("page"), dialog.getByRole("button", { name: "Sign in as user" }).click()]);
    const banner = tab.getByTestId("impersonation-banner");
    await banner.waitFor();
    const text = await banner.innerText();
    expect(text).toContain("ivy@console.e2e");
    expect(text).toContain(s.admin.email);
    expect(text).toContain("ticket 42");
    expect(text).toMatch(/Expires at \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \(in (29|30) min/);
    // The token in the fragment is gone from the address bar.
    expect(tab.url()).not.toContain("impersonation=");
    await tab.getByRole("heading", { name: "ivy@console.e2e" }).waitFor();
    await shot(tab, "09-impersonation-banner");
    await tab.getByRole("button", { name: "Stop" }).click();
    await tab.getByRole("heading", { name: "Session ended" }).waitFor();
    await tab.close();

    await frame.getByRole("tab", { name: "Audit log" }).click();
    const log = frame.getByRole("table", { name: "Audit log" });
    await eventually(async () => {
      await frame.getByRole("button", { name: "Refresh" }).click();
      await page.getByText("Loading the audit log…").waitFor({ state: "detached" });
      const rows = await log.locator("tbody tr").allInnerTexts();
      const started = rows.filter((r) => r.includes(s.admin.id));
      if (started.length < 2) throw new Error(`impersonation not yet in the log: ${rows.join(" | ")}`);
    }, 60_000, 1000);
    await shot(page, "10-user-audit-log");
  });

  it("shows the activity history and opens a user from it", async () => {
    await open("/activity");
    const table = page.getByRole("table", { name: "Activity history" });
    await eventually(async () => {
      await page.getByRole("button", { name: "Refresh" }).click();
      await page.getByText("Counting actions…").waitFor({ state: "detached" });
      if (!(await table.locator("tbody tr a", { hasText: s.users.dan.id }).count())) throw new Error("dan not counted yet");
    }, 60_000, 1000);
    await shot(page, "11-activity-history");
    await table.locator("tbody tr a", { hasText: s.users.dan.id }).click();
    await page.getByRole("region", { name: "User" }).getByRole("heading", { name: "dan@console.e2e" }).waitFor();
    expect(new URL(page.url()).pathname).toBe("/users");
  });

  it("lists user actions by the User history filter and exports them to XLSX", async () => {
    await open(`/actions?subject=${s.users.dan.id}`);
    const table = page.getByRole("table", { name: "User actions" });
    await eventually(async () => {
      await page.reload();
      await table.locator("tbody tr", { hasText: "e2e withdrawal" }).waitFor({ timeout: 3000 });
    }, 60_000, 1000);
    const headers = await table.locator("thead th").allInnerTexts();
    expect(headers).toEqual([
      "Action",
      "Date and time",
      "User",
      "Token ID",
      "Modified user",
      "Project",
      "Comments",
      "IP and device",
      "Result",
      "Impersonator",
    ]);
    const shown = await table.locator("tbody tr").count();
    await shot(page, "12-user-actions");
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Export to XLSX" }).click()]);
    const file = join(results, "user-actions.xlsx");
    await download.saveAs(file);
    expect(download.suggestedFilename()).toMatch(/\.xlsx$/);
    // An independent reader (exceljs) opens the file.
    const book = new ExcelJS.Workbook();
    await book.xlsx.readFile(file);
    const sheet = book.worksheets[0];
    const cells: string[] = [];
    sheet.eachRow((row) => cells.push(row.values ? JSON.stringify(row.values) : ""));
    expect(cells.length).toBe(shown + 1); // the header row and each event of the filter
    expect(cells.join("\n")).toContain(s.users.dan.id);
    expect(cells.join("\n")).toContain("e2e withdrawal");
  });

  it("refuses a non-admin with a clear page", async () => {
    const other = await context.newPage();
    await other.goto(s.gateway + "/users");
    await other.getByLabel("Email", { exact: true }).fill(s.plain.email);
    await other.getByLabel("Password").fill(s.plain.password);
    await other.getByRole("button", { name: "Sign in" }).click();
    await other.getByRole("heading", { name: "USER_ADMIN role required" }).waitFor();
    expect(await other.getByRole("table", { name: "Users" }).count()).toBe(0);
    await shot(other, "13-not-admin");
    // A wrong password is said as such, not as an unknown error.
    await other.getByRole("button", { name: "Sign out" }).click();
    await other.getByLabel("Email", { exact: true }).fill(s.plain.email);
    await other.getByLabel("Password").fill("wrong password here");
    await other.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => other.getByRole("alert").innerText()).toBe("Wrong email, password or code");
    await other.close();
  });
});
