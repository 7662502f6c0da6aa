import { useState } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { accounts, auth, billing } from "../api/client";
import { Role, TwoFactorState, UserSchema, type User } from "../gen/steward/accounts/v1/accounts_service_pb";
import { ErrorBanner, FieldError, Progress, StatusIcon, statusLabel } from "../components/ui";
import { formatDateTime, formatMoney } from "../lib/format";
import { navigate, useLocation, withParams } from "../lib/router";
import type { Operation } from "./operations";
import { StatusAction } from "../gen/steward/accounts/v1/accounts_service_pb";
import {
  AuditLogTab,
  BillingHistoryTab,
  CollaborationTab,
  EnvironmentsTab,
  FundingHistoryTab,
  QuotasTab,
  SubscriptionsTab,
} from "./UserTabs";

const TABS = [
  ["info", "Info"],
  ["environments", "Environments"],
  ["subscriptions", "Subscriptions"],
  ["audit", "Audit log"],
  ["billing", "Billing history"],
  ["quotas", "Quotas"],
  ["funding", "Funding history"],
  ["collaboration", "Collaboration"],
] as const;

export function UserFrame({
  userId,
  onOperation,
  onChanged,
}: {
  userId: string;
  onOperation: (op: Operation) => void;
  onChanged: () => void;
}) {
  const { params } = useLocation();
  const tab = params.get("tab") ?? "info";
  const user = useQuery({
    queryKey: ["user", userId],
    queryFn: async () => (await accounts.getUser({ userId })).user!,
  });
  return (
    <section className="frame" aria-label="User">
      <div className="frame-head">
        {user.data && <StatusIcon status={user.data.status} />}
        <h2>{user.data?.email ?? userId}</h2>
        <button onClick={() => onOperation({ kind: "impersonate" })} disabled={!user.data}>
          Sign in as user
        </button>
        <button aria-label="Close user" onClick={() => navigate(withParams({ user: undefined, tab: undefined }))}>
          ✕
        </button>
      </div>
      <nav className="subtabs" role="tablist" aria-label="User tabs">
        {TABS.map(([id, title]) => (
          <button
            key={id}
            role="tab"
            aria-selected={tab === id}
            className={tab === id ? "active" : ""}
            onClick={() => navigate(withParams({ tab: id === "info" ? undefined : id }), true)}
          >
            {title}
          </button>
        ))}
      </nav>
      <ErrorBanner error={user.error} />
      {user.isLoading && <Progress label="Loading user…" />}
      {user.data && (
        <div className="tab-body">
          {tab === "info" && <InfoTab user={user.data} onOperation={onOperation} onChanged={onChanged} />}
          {tab === "environments" && <EnvironmentsTab userId={userId} />}
          {tab === "subscriptions" && <SubscriptionsTab userId={userId} />}
          {tab === "audit" && <AuditLogTab userId={userId} />}
          {tab === "billing" && <BillingHistoryTab userId={userId} />}
          {tab === "quotas" && <QuotasTab userId={userId} />}
          {tab === "funding" && <FundingHistoryTab userId={userId} />}
          {tab === "collaboration" && <CollaborationTab userId={userId} />}
        </div>
      )}
    </section>
  );
}

function Pencil({ label, onClick }: { label: string; onClick: () => void }) {
  return (
    <button className="pencil" aria-label={`Edit ${label}`} title={`Edit ${label}`} onClick={onClick}>
      ✎
    </button>
  );
}

const ROLE_NAMES: Record<number, string> = {
  [Role.USER]: "USER",
  [Role.USER_ADMIN]: "USER_ADMIN",
  [Role.PLATFORM_SERVICE]: "PLATFORM_SERVICE",
};

function InfoTab({ user, onOperation, onChanged }: { user: User; onOperation: (op: Operation) => void; onChanged: () => void }) {
  const qc = useQueryClient();
  const balance = useQuery({
    queryKey: ["balance", user.id],
    queryFn: async () => (await billing.getBalance({ userId: user.id })).balance!,
  });
  const [notes, setNotes] = useState(user.notes);
  const [phone, setPhone] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState("");

  async function run(what: string, f: () => Promise<User | undefined | void>) {
    setBusy(true);
    setError(null);
    setSaved("");
    try {
      const u = await f();
      if (u) qc.setQueryData(["user", user.id], u);
      else await qc.invalidateQueries({ queryKey: ["user", user.id] });
      setSaved(what);
      onChanged();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  const update = (fields: { phone?: string; upgradeInProgress?: boolean }, paths: string[]) =>
    run("Saved", async () => {
      const res = await accounts.updateUser({
        user: create(UserSchema, { id: user.id, etag: user.etag, ...fields }),
        updateMask: create(FieldMaskSchema, { paths }),
      });
      return res.user;
    });

  const b = balance.data;
  return (
    <div className="info">
      <dl>
        <dt>Email</dt>
        <dd>
          {user.email} <Pencil label="email" onClick={() => onOperation({ kind: "email" })} />
        </dd>
        <dt>Status</dt>
        <dd>
          <StatusIcon status={user.status} /> {statusLabel(user.status)}{" "}
          <Pencil label="status" onClick={() => onOperation({ kind: "status", action: StatusAction.UNSPECIFIED })} />
        </dd>
        <dt>Group</dt>
        <dd>
          {user.group} <Pencil label="group" onClick={() => onOperation({ kind: "group" })} />
        </dd>
        <dt>User ID</dt>
        <dd className="mono">{user.id}</dd>
        <dt>Ext. billing ID</dt>
        <dd className="mono">{user.extBillingId}</dd>
        <dt>Balance</dt>
        <dd data-testid="info-balance">
          {b ? formatMoney(b.main?.value, b.currencyCode) : "…"}{" "}
          <Pencil label="balance" onClick={() => onOperation({ kind: "refill" })} />
        </dd>
        <dt>Bonus</dt>
        <dd data-testid="info-bonus">{b ? formatMoney(b.bonus?.value, b.currencyCode) : "…"}</dd>
        <dt>Two-factor auth</dt>
        <dd>
          {user.twoFactorState === TwoFactorState.ENABLED ? "Enabled" : "Disabled"}{" "}
          {user.twoFactorState === TwoFactorState.ENABLED && (
            <button
              disabled={busy}
              onClick={() => {
                if (confirm(`Turn two-factor authentication off for ${user.email}?`))
                  void run("Two-factor disabled", async () => {
                    await auth.disableTwoFactor({ userId: user.id });
                  });
              }}
            >
              Force-disable
            </button>
          )}
        </dd>
        <dt>Reseller</dt>
        <dd>{user.reseller}</dd>
        <dt>Phone number</dt>
        <dd>
          {phone === null ? (
            <>
              {user.phone ?? ""} <Pencil label="phone" onClick={() => setPhone(user.phone ?? "")} />
            </>
          ) : (
            <form
              className="inline"
              onSubmit={(e) => {
                e.preventDefault();
                void update({ phone }, ["phone"]).then(() => setPhone(null));
              }}
            >
              <input value={phone} onChange={(e) => setPhone(e.target.value)} aria-label="Phone number" autoFocus />
              <button type="submit" disabled={busy}>Save</button>
              <button type="button" onClick={() => setPhone(null)}>Cancel</button>
            </form>
          )}
          <FieldError error={error} field="user.phone" />
        </dd>
        <dt>Upgrade in progress</dt>
        <dd>
          <label className="check">
            <input
              type="checkbox"
              checked={user.upgradeInProgress}
              disabled={busy}
              onChange={(e) => void update({ upgradeInProgress: e.target.checked }, ["upgrade_in_progress"])}
            />{" "}
            {user.upgradeInProgress ? "yes" : "no"}
          </label>
        </dd>
        <dt>Roles</dt>
        <dd>{user.roles.map((r) => ROLE_NAMES[r] ?? r).join(", ")}</dd>
        <dt>Signup date</dt>
        <dd>{formatDateTime(user.signupTime)}</dd>
        {user.destroyTime && (
          <>
            <dt>Destroyed</dt>
            <dd>{formatDateTime(user.destroyTime)}</dd>
          </>
        )}
      </dl>
      <label className="notes-field">
        Notes
        <textarea value={notes} onChange={(e) => setNotes(e.target.value)} rows={3} aria-label="Notes" />
      </label>
      <div className="buttons left">
        <button
          className="primary"
          disabled={busy || notes === user.notes}
          onClick={() =>
            void run("Notes saved", async () => (await accounts.setNotes({ userId: user.id, notes, etag: user.etag })).user)
          }
        >
          Save notes
        </button>
        <button
          disabled={busy}
          title="Lift a lockout after too many failed sign-ins"
          onClick={() => void run("Sign-in lockout lifted", async () => void (await auth.unblockUser({ userId: user.id })))}
        >
          Unblock sign-in
        </button>
        {saved && <span className="saved" role="status">{saved}</span>}
      </div>
      <FieldError error={error} field="notes" />
      <ErrorBanner error={error} />
      <ErrorBanner error={balance.error} />
    </div>
  );
}
