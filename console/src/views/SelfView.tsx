// The console's view of one user, under an impersonation token ("Sign in as
// user" opens it in a new tab): a banner naming the administrator, the
// reason and the expiry, with Stop; the user's own account, balance and
// audit log, read as the user (SELF).
import { useEffect, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { accounts, auth, billing } from "../api/client";
import { setSession, type Session } from "../api/session";
import { ErrorBanner, StatusIcon, statusLabel } from "../components/ui";
import { formatDateTime, formatDuration, formatMoney } from "../lib/format";
import { AuditLogTab } from "./UserTabs";
import { signOut } from "../App";
import { navigate } from "../lib/router";

export function SelfView({ session }: { session: Session }) {
  const imp = session.impersonation;
  const [now, setNow] = useState(Date.now());
  const [stopped, setStopped] = useState(false);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  const user = useQuery({
    queryKey: ["self", session.userId],
    queryFn: async () => (await accounts.getUser({ userId: session.userId })).user!,
    enabled: !stopped,
  });
  const balance = useQuery({
    queryKey: ["self-balance", session.userId],
    queryFn: async () => (await billing.getBalance({ userId: session.userId })).balance!,
    enabled: !stopped,
  });
  const expired = imp ? now >= imp.expires : false;

  async function stop() {
    if (!imp) return;
    setError(null);
    try {
      await auth.stopImpersonation({ sessionId: imp.sessionId });
      setStopped(true);
      navigate("/ended", true);
      setSession(null);
    } catch (err) {
      setError(err);
    }
  }

  const b = balance.data;
  return (
    <div className="app">
      {imp && (
        <div className={expired ? "banner impersonation expired" : "banner impersonation"} role="alert" data-testid="impersonation-banner">
          <span>
            Signed in as <b>{session.email}</b> by administrator <b>{imp.adminEmail}</b> ({imp.adminUserId}). Reason:{" "}
            <b>{imp.reason}</b>. {expired ? "Expired" : "Expires"} at {formatDateTime(new Date(imp.expires))}
            {!expired && ` (in ${formatDuration(imp.expires - now)})`}.
          </span>
          <button className="danger" onClick={() => void stop()}>
            Stop
          </button>
        </div>
      )}
      {!imp && (
        <header className="topbar">
          <span className="brand">Steward</span>
          <span className="who">{session.email}</span>
          <button onClick={() => void signOut()}>Sign out</button>
        </header>
      )}
      <main className="self">
        <ErrorBanner error={error} />
        <ErrorBanner error={user.error} />
        {user.data && (
          <section className="card wide">
            <h2>
              <StatusIcon status={user.data.status} /> {user.data.email}
            </h2>
            <dl>
              <dt>User ID</dt>
              <dd className="mono">{user.data.id}</dd>
              <dt>Status</dt>
              <dd>{statusLabel(user.data.status)}</dd>
              <dt>Group</dt>
              <dd>{user.data.group}</dd>
              <dt>Balance</dt>
              <dd>{b ? formatMoney(b.main?.value, b.currencyCode) : ""}</dd>
              <dt>Bonus</dt>
              <dd>{b ? formatMoney(b.bonus?.value, b.currencyCode) : ""}</dd>
              <dt>Phone</dt>
              <dd>{user.data.phone ?? ""}</dd>
              <dt>Signup date</dt>
              <dd>{formatDateTime(user.data.signupTime)}</dd>
            </dl>
          </section>
        )}
        <section className="card wide">
          <h2>Audit log</h2>
          <AuditLogTab userId={session.userId} />
        </section>
      </main>
    </div>
  );
}
