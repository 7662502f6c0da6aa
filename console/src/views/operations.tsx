// Management operations on one or many users: change status, change group
// (with the mail template picked from the notifications service), change
// email, refill and withdraw, delete personal data, sign in as user. Each
// asks to confirm with the count of users, and shows per-user results.
import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { accounts, auth, billing, notifications, requestId } from "../api/client";
import { explain, explainReason, notServed } from "../api/errors";
import { claims, encodeHandover, expiry, getSession, type Session } from "../api/session";
import { ErasureMode, StatusAction, type User } from "../gen/steward/accounts/v1/accounts_service_pb";
import { BalanceType } from "../gen/steward/billing/v1/billing_service_pb";
import { Result } from "../gen/steward/common/v1/common_pb";
import { Dialog, ErrorBanner, FieldError, Progress } from "../components/ui";
import { formatMoney, parseAmount, plural } from "../lib/format";
import { useGroups } from "./UsersPanel";

export type Operation =
  | { kind: "status"; action: StatusAction }
  | { kind: "group" }
  | { kind: "email" }
  | { kind: "refill" }
  | { kind: "withdraw" }
  | { kind: "erase" }
  | { kind: "impersonate" };

export interface Outcome {
  userId: string;
  label: string;
  ok: boolean;
  detail: string;
}

const STATUS_ACTIONS: { action: StatusAction; label: string; done: string }[] = [
  { action: StatusAction.ACTIVATE, label: "Activate", done: "Activated" },
  { action: StatusAction.SUSPEND, label: "Suspend", done: "Suspended" },
  { action: StatusAction.DEACTIVATE, label: "Deactivate", done: "Deactivated" },
  { action: StatusAction.DESTROY, label: "Destroy", done: "Destroyed" },
];

export function Operations({
  targets,
  users,
  operation,
  setOperation,
  onDone,
}: {
  targets: string[];
  users: Map<string, User>;
  operation: Operation | null;
  setOperation: (op: Operation | null) => void;
  onDone: () => void;
}) {
  const [results, setResults] = useState<{ title: string; outcomes: Outcome[] } | null>(null);
  const none = targets.length === 0;
  const one = targets.length === 1;
  const label = (id: string) => users.get(id)?.email || id;
  const finish = (title: string, outcomes: Outcome[]) => {
    setOperation(null);
    setResults({ title, outcomes });
    onDone();
  };
  const common = { targets, label, onClose: () => setOperation(null), finish };

  return (
    <>
      <div className="toolbar actions" role="toolbar" aria-label="Management operations">
        <span className="muted">{none ? "Select users to act on" : `${plural(targets.length, "user")} selected`}</span>
        <details className="menu">
          <summary aria-disabled={none} className={none ? "disabled" : ""}>
            Change status ▾
          </summary>
          {!none && (
            <div className="menu-items">
              {STATUS_ACTIONS.map((a) => (
                <button key={a.action} onClick={(e) => { closeMenu(e); setOperation({ kind: "status", action: a.action }); }}>
                  {a.label}
                </button>
              ))}
              <button onClick={(e) => { closeMenu(e); setOperation({ kind: "erase" }); }}>Delete personal data</button>
            </div>
          )}
        </details>
        <details className="menu">
          <summary aria-disabled={none} className={none ? "disabled" : ""}>
            Actions ▾
          </summary>
          {!none && (
            <div className="menu-items">
              <button onClick={(e) => { closeMenu(e); setOperation({ kind: "group" }); }}>Change group</button>
              <button disabled={!one} onClick={(e) => { closeMenu(e); setOperation({ kind: "email" }); }}>
                Change email
              </button>
              <button onClick={(e) => { closeMenu(e); setOperation({ kind: "refill" }); }}>Refill balance</button>
              <button onClick={(e) => { closeMenu(e); setOperation({ kind: "withdraw" }); }}>Withdraw funds</button>
            </div>
          )}
        </details>
        <button disabled={!one} onClick={() => setOperation({ kind: "impersonate" })}>
          Sign in as user
        </button>
      </div>
      {operation?.kind === "status" && <StatusDialog {...common} action={operation.action} />}
      {operation?.kind === "group" && <GroupDialog {...common} />}
      {operation?.kind === "email" && one && <EmailDialog {...common} />}
      {(operation?.kind === "refill" || operation?.kind === "withdraw") && <MoneyDialog {...common} kind={operation.kind} />}
      {operation?.kind === "erase" && <EraseDialog {...common} />}
      {operation?.kind === "impersonate" && one && <ImpersonateDialog {...common} />}
      {results && (
        <Dialog title={results.title} onClose={() => setResults(null)} wide>
          <table className="grid results" aria-label="Results">
            <thead>
              <tr>
                <th>User</th>
                <th>Result</th>
                <th>Detail</th>
              </tr>
            </thead>
            <tbody>
              {results.outcomes.map((o) => (
                <tr key={o.userId} className={o.ok ? "ok" : "failed"}>
                  <td>{o.label}</td>
                  <td>{o.ok ? "Success" : "Refused"}</td>
                  <td>{o.detail}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <div className="buttons">
            <button className="primary" onClick={() => setResults(null)}>
              Close
            </button>
          </div>
        </Dialog>
      )}
    </>
  );
}

function closeMenu(e: React.MouseEvent) {
  (e.currentTarget.closest("details") as HTMLDetailsElement | null)?.removeAttribute("open");
}

interface Common {
  targets: string[];
  label: (id: string) => string;
  onClose: () => void;
  finish: (title: string, outcomes: Outcome[]) => void;
}

function batchOutcomes(
  results: { userId: string; result: Result; reason: string; message: string }[],
  label: (id: string) => string,
  ok: string,
): Outcome[] {
  return results.map((r) => ({
    userId: r.userId,
    label: label(r.userId),
    ok: r.result === Result.SUCCESS,
    detail: r.result === Result.SUCCESS ? ok : r.reason ? explainReason(r.reason) : r.message,
  }));
}

function Buttons({ busy, ok, onClose, disabled }: { busy: boolean; ok: string; onClose: () => void; disabled?: boolean }) {
  return (
    <div className="buttons">
      <button type="button" onClick={onClose} disabled={busy}>
        Cancel
      </button>
      <button type="submit" className="primary" disabled={busy || disabled}>
        {ok}
      </button>
    </div>
  );
}

function StatusDialog({ targets, label, onClose, finish, action: given }: Common & { action: StatusAction }) {
  // UNSPECIFIED (the Info tab's pencil): the administrator picks the change.
  const [action, setAction] = useState(given === StatusAction.UNSPECIFIED ? StatusAction.ACTIVATE : given);
  const { label: name, done } = STATUS_ACTIONS.find((a) => a.action === action)!;
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [key] = useState(requestId);
  return (
    <Dialog title={`${name} ${plural(targets.length, "user")}`} onClose={onClose}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            const res = await accounts.batchChangeStatus({ requestId: key, userIds: targets, action, reason });
            finish(`${name}: results`, batchOutcomes(res.results, label, done));
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <p>
          {name} <b>{plural(targets.length, "user")}</b>: {targets.slice(0, 5).map(label).join(", ")}
          {targets.length > 5 && "…"}
        </p>
        {given === StatusAction.UNSPECIFIED && (
          <label>
            New status
            <select value={action} onChange={(e) => setAction(Number(e.target.value))} aria-label="New status">
              {STATUS_ACTIONS.map((a) => (
                <option key={a.action} value={a.action}>
                  {a.label}
                </option>
              ))}
            </select>
          </label>
        )}
        <label>
          Reason (recorded in the audit log)
          <input value={reason} onChange={(e) => setReason(e.target.value)} />
        </label>
        <ErrorBanner error={error} />
        {busy && <Progress label={`Changing ${plural(targets.length, "user")}…`} />}
        <Buttons busy={busy} onClose={onClose} ok={`${name} ${plural(targets.length, "user")}`} />
      </form>
    </Dialog>
  );
}

function GroupDialog({ targets, label, onClose, finish }: Common) {
  const groups = useGroups();
  const [group, setGroup] = useState("");
  const [notify, setNotify] = useState(false);
  const [template, setTemplate] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [key] = useState(requestId);
  const templates = useQuery({
    queryKey: ["templates", "group_change"],
    queryFn: async () => (await notifications.listTemplates({ category: "group_change", page: { pageSize: 100 } })).templates,
    enabled: notify,
  });
  const unavailable = templates.error && notServed(templates.error);
  return (
    <Dialog title={`Change group of ${plural(targets.length, "user")}`} onClose={onClose}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            const res = await accounts.batchChangeGroup({
              requestId: key,
              userIds: targets,
              group,
              notify,
              mailTemplateId: notify ? template : "",
            });
            finish("Change group: results", batchOutcomes(res.results, label, `Moved to ${group}${notify ? ", notified" : ""}`));
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <label>
          User group
          <select value={group} onChange={(e) => setGroup(e.target.value)} required aria-label="User group">
            <option value="">Choose…</option>
            {groups.data?.map((g) => (
              <option key={g.name} value={g.name}>
                {g.displayName || g.name}
              </option>
            ))}
          </select>
        </label>
        <FieldError error={error} field="group" />
        <label className="check">
          <input type="checkbox" checked={notify} onChange={(e) => setNotify(e.target.checked)} /> Email notification
        </label>
        <label>
          Email template
          <select
            value={template}
            onChange={(e) => setTemplate(e.target.value)}
            disabled={!notify || !templates.data}
            required={notify}
            aria-label="Email template"
          >
            <option value="">{templates.isLoading ? "Loading templates…" : "Choose…"}</option>
            {templates.data?.map((t) => (
              <option key={t.templateId} value={t.templateId}>
                {t.templateId}
                {t.description ? ` — ${t.description}` : ""}
              </option>
            ))}
          </select>
        </label>
        {unavailable && (
          <div className="not-available" role="status">
            Mail templates not available in this release (the notifications service is not served), so users cannot be
            notified.
          </div>
        )}
        {templates.error && !unavailable && <ErrorBanner error={templates.error} />}
        <FieldError error={error} field="mail_template_id" />
        <ErrorBanner error={error} />
        {busy && <Progress label="Changing group…" />}
        <Buttons busy={busy} onClose={onClose} ok={`OK (${plural(targets.length, "user")})`} disabled={notify && !template} />
      </form>
    </Dialog>
  );
}

function EmailDialog({ targets, label, onClose, finish }: Common) {
  const [email, setEmail] = useState("");
  const [notify, setNotify] = useState(true);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [key] = useState(requestId);
  const id = targets[0];
  return (
    <Dialog title="Change email" onClose={onClose}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            const res = await accounts.changeEmail({ requestId: key, userId: id, newEmail: email, notify });
            finish("Change email: result", [
              { userId: id, label: label(id), ok: true, detail: `Now ${res.user?.email}${notify ? "; both addresses told" : ""}` },
            ]);
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <p>
          Current: <b>{label(id)}</b>
        </p>
        <label>
          New email
          <input type="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
        </label>
        <FieldError error={error} field="new_email" />
        <label className="check">
          <input type="checkbox" checked={notify} onChange={(e) => setNotify(e.target.checked)} /> Notify user
        </label>
        <ErrorBanner error={error} />
        <Buttons busy={busy} onClose={onClose} ok="Apply" />
      </form>
    </Dialog>
  );
}

function MoneyDialog({ targets, label, onClose, finish, kind }: Common & { kind: "refill" | "withdraw" }) {
  const [amount, setAmount] = useState("");
  const [type, setType] = useState(BalanceType.MAIN);
  const [notes, setNotes] = useState("");
  const [done, setDone] = useState<number | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [keys] = useState(() => new Map(targets.map((t) => [t, requestId()])));
  const title = kind === "refill" ? "Refill balance" : "Withdraw funds";
  const parsed = parseAmount(amount);
  return (
    <Dialog title={`${title} (${plural(targets.length, "user")})`} onClose={onClose}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          if (!parsed) return;
          setError(null);
          const outcomes: Outcome[] = [];
          setDone(0);
          for (const [i, userId] of targets.entries()) {
            const req = { requestId: keys.get(userId)!, userId, amount: { value: parsed }, balanceType: type, notes };
            try {
              const res = kind === "refill" ? await billing.refill(req) : await billing.withdraw(req);
              const b = res.balance!;
              outcomes.push({
                userId,
                label: label(userId),
                ok: true,
                detail: `Balance ${formatMoney(b.main?.value, b.currencyCode)}, bonus ${formatMoney(b.bonus?.value, b.currencyCode)}`,
              });
            } catch (err) {
              if (targets.length === 1) {
                setError(err);
                setDone(null);
                return;
              }
              outcomes.push({ userId, label: label(userId), ok: false, detail: explain(err).message });
            }
            setDone(i + 1);
          }
          finish(`${title}: results`, outcomes);
        }}
      >
        <label>
          Amount
          <input inputMode="decimal" value={amount} onChange={(e) => setAmount(e.target.value)} required aria-label="Amount" />
        </label>
        {amount && !parsed && <div className="field-error">Enter an amount such as 25 or 12.50</div>}
        <FieldError error={error} field="amount" />
        <FieldError error={error} field="amount.value" />
        <label>
          Type
          <select value={type} onChange={(e) => setType(Number(e.target.value))} aria-label="Balance type">
            <option value={BalanceType.MAIN}>Main</option>
            <option value={BalanceType.BONUS}>Bonus</option>
          </select>
        </label>
        <label>
          Notes
          <input value={notes} onChange={(e) => setNotes(e.target.value)} aria-label="Notes" />
        </label>
        <ErrorBanner error={error} />
        {done !== null && <Progress label={kind === "refill" ? "Refilling…" : "Withdrawing…"} done={done} total={targets.length} />}
        <Buttons busy={done !== null} onClose={onClose} ok={`OK (${plural(targets.length, "user")})`} disabled={!parsed} />
      </form>
    </Dialog>
  );
}

const MODES: Record<number, string> = {
  [ErasureMode.ANONYMIZATION]: "ANONYMIZATION: hashed with a random salt; the person may register again with the same email",
  [ErasureMode.PSEUDOANONYMIZATION]: "PSEUDOANONYMIZATION: hashed with the platform salt; the same email cannot register again",
};

function EraseDialog({ targets, label, onClose, finish }: Common) {
  const settings = useQuery({ queryKey: ["settings"], queryFn: async () => (await accounts.getSettings({})).settings });
  const [typed, setTyped] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [key] = useState(requestId);
  const word = `delete ${targets.length}`;
  return (
    <Dialog title={`Delete personal data of ${plural(targets.length, "user")}`} onClose={onClose}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            const res = await accounts.batchDeletePersonalData({ requestId: key, userIds: targets });
            finish("Delete personal data: results", batchOutcomes(res.results, label, "Destroyed; email and phone erased"));
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <p>
          Destroys each account (if not yet), replaces its email and phone by a hash and sets its status to Deleted. This
          cannot be undone.
        </p>
        <p data-testid="erasure-mode">
          Mode: <b>{settings.data ? MODES[settings.data.erasureMode] ?? "not set" : settings.isLoading ? "…" : ""}</b>
        </p>
        <ErrorBanner error={settings.error} />
        <p>{targets.slice(0, 5).map(label).join(", ")}{targets.length > 5 && "…"}</p>
        <label>
          Type <code>{word}</code> to confirm
          <input value={typed} onChange={(e) => setTyped(e.target.value)} aria-label="Confirmation" />
        </label>
        <ErrorBanner error={error} />
        {busy && <Progress label="Deleting personal data…" />}
        <Buttons busy={busy} onClose={onClose} ok="Delete personal data" disabled={typed.trim() !== word} />
      </form>
    </Dialog>
  );
}

function ImpersonateDialog({ targets, label, onClose }: Common) {
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const id = targets[0];
  return (
    <Dialog title="Sign in as user" onClose={onClose}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          // Opened now, inside the click, so no popup blocker stops it.
          const tab = window.open("", "_blank");
          setBusy(true);
          setError(null);
          try {
            const res = await auth.startImpersonation({ userId: id, reason });
            const t = res.tokens!;
            const s = res.session!;
            const admin = getSession()!;
            const session: Session = {
              accessToken: t.accessToken,
              accessExpires: expiry(t.accessTokenExpireTime),
              refreshToken: "",
              userId: s.userId,
              email: label(id),
              roles: claims(t.accessToken).roles ?? [],
              impersonation: {
                sessionId: s.id,
                adminUserId: s.adminUserId,
                adminEmail: admin.email,
                reason: s.reason,
                expires: expiry(s.expireTime),
              },
            };
            const url = "/self" + encodeHandover(session);
            if (tab) tab.location.href = url;
            else window.open(url, "_blank");
            onClose();
          } catch (err) {
            tab?.close();
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <p>
          Opens the console's view of <b>{label(id)}</b> in a new tab, signed in as them. The user is notified; every
          action is recorded with you as the impersonator.
        </p>
        <label>
          Reason
          <input value={reason} onChange={(e) => setReason(e.target.value)} required aria-label="Reason" />
        </label>
        <FieldError error={error} field="reason" />
        <ErrorBanner error={error} />
        <Buttons busy={busy} onClose={onClose} ok="Sign in as user" />
      </form>
    </Dialog>
  );
}

