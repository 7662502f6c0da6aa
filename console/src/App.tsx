import { useEffect, useState } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { getSession, isAdmin, onSession, setSession, type Session } from "./api/session";
import { auth } from "./api/client";
import { navigate, useLocation } from "./lib/router";
import { SignIn } from "./views/SignIn";
import { UsersPanel } from "./views/UsersPanel";
import { ActivityHistory } from "./views/ActivityHistory";
import { UserActions } from "./views/UserActions";
import { SelfView } from "./views/SelfView";

function useSession(): Session | null {
  const [s, set] = useState(getSession());
  useEffect(() => onSession(set), []);
  return s;
}

export async function signOut(): Promise<void> {
  const s = getSession();
  setSession(null);
  if (s?.refreshToken) {
    try {
      await auth.signOut({ refreshToken: s.refreshToken });
    } catch {
      // The session is gone locally either way.
    }
  }
}

const TABS = [
  { path: "/users", title: "Users" },
  { path: "/activity", title: "Activity history" },
  { path: "/actions", title: "User actions" },
];

export function App() {
  const session = useSession();
  const { path } = useLocation();
  const qc = useQueryClient();
  useEffect(() => {
    if (!session) qc.clear();
  }, [session, qc]);

  if (!session && path === "/ended") return <SessionEnded />;
  if (!session) return <SignIn />;
  if (session.impersonation || path === "/self") return <SelfView session={session} />;
  if (!isAdmin(session)) return <AdminRequired session={session} />;
  const current = TABS.find((t) => path.startsWith(t.path)) ?? TABS[0];
  return (
    <div className="app">
      <header className="topbar">
        <span className="brand">Steward</span>
        <nav className="tabs" role="tablist">
          {TABS.map((t) => (
            <a
              key={t.path}
              role="tab"
              aria-selected={t === current}
              className={t === current ? "tab active" : "tab"}
              href={t.path}
              onClick={(e) => {
                e.preventDefault();
                navigate(t.path);
              }}
            >
              {t.title}
            </a>
          ))}
        </nav>
        <span className="who" data-testid="who">{session.email}</span>
        <button onClick={() => void signOut()}>Sign out</button>
      </header>
      <main>
        {current.path === "/users" && <UsersPanel />}
        {current.path === "/activity" && <ActivityHistory />}
        {current.path === "/actions" && <UserActions />}
      </main>
    </div>
  );
}

function SessionEnded() {
  return (
    <div className="center">
      <div className="card" role="status">
        <h1>Session ended</h1>
        <p>The sign-in-as-user session was stopped; its token no longer works. You can close this tab.</p>
      </div>
    </div>
  );
}

function AdminRequired({ session }: { session: Session }) {
  return (
    <div className="center">
      <div className="card refusal" role="alert">
        <h1>USER_ADMIN role required</h1>
        <p>
          You are signed in as <b>{session.email}</b>, which does not hold the USER_ADMIN role. The
          admin console manages every account, so only administrators may use it.
        </p>
        <p>Ask an administrator to grant you the role, or sign in with another account.</p>
        <button onClick={() => void signOut()}>Sign out</button>
      </div>
    </div>
  );
}
