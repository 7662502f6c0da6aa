// The signed-in session of this browser tab (sessionStorage: one per tab,
// gone when the tab closes). An impersonation tab holds the impersonation
// token instead, handed over in the URL fragment (never sent to a server).
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

export interface Session {
  accessToken: string;
  accessExpires: number; // ms since epoch
  refreshToken: string; // empty for impersonation tokens
  userId: string;
  email: string;
  roles: string[];
  impersonation?: {
    sessionId: string;
    adminUserId: string;
    adminEmail: string;
    reason: string;
    expires: number;
  };
}

const KEY = "steward.session";
type Listener = (s: Session | null) => void;
const listeners = new Set<Listener>();
let current: Session | null = load();

function load(): Session | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

export function getSession(): Session | null {
  return current;
}

export function setSession(s: Session | null): void {
  current = s;
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
  listeners.forEach((l) => l(s));
}

export function onSession(l: Listener): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

/** The claims of a JWT, read (not verified: the gateway verifies). */
export function claims(token: string): { sub?: string; roles?: string[]; act?: { sub?: string }; sid?: string } {
  const part = token.split(".")[1] ?? "";
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const json = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return JSON.parse(json);
}

export function expiry(ts: Timestamp | undefined): number {
  return ts ? timestampDate(ts).getTime() : Date.now() + 60_000;
}

export function isAdmin(s: Session): boolean {
  return s.roles.includes("USER_ADMIN") && !s.impersonation;
}

/** The fragment an impersonation tab is opened with. */
export const HANDOVER = "#impersonation=";

export function encodeHandover(s: Session): string {
  return HANDOVER + encodeURIComponent(btoa(JSON.stringify(s)));
}

/** Takes an impersonation handed over in the fragment, once, and clears it. */
export function takeHandover(): void {
  if (!location.hash.startsWith(HANDOVER)) return;
  try {
    const s = JSON.parse(atob(decodeURIComponent(location.hash.slice(HANDOVER.length)))) as Session;
    setSession(s);
  } finally {
    history.replaceState(null, "", location.pathname + location.search);
  }
}
