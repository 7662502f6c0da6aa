// One gRPC-Web transport to the gateway this console was served from, a
// bearer from the tab's session on every call, and the access token
// refreshed before it expires.
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AccountsService } from "../gen/steward/accounts/v1/accounts_service_pb";
import { AuthService } from "../gen/steward/accounts/v1/auth_service_pb";
import { AuditService } from "../gen/steward/audit/v1/audit_service_pb";
import { BillingService } from "../gen/steward/billing/v1/billing_service_pb";
import { QuotasService } from "../gen/steward/quotas/v1/quotas_service_pb";
import { NotificationsService } from "../gen/steward/notifications/v1/notifications_service_pb";
import { expiry, getSession, setSession } from "./session";

const bearer: Interceptor = (next) => async (req) => {
  const s = getSession();
  if (s && !req.header.has("authorization")) {
    req.header.set("authorization", `Bearer ${s.accessToken}`);
  }
  return next(req);
};

const transport = createGrpcWebTransport({
  baseUrl: typeof location === "undefined" ? "http://127.0.0.1:50050" : location.origin,
  interceptors: [bearer],
});

export const accounts = createClient(AccountsService, transport);
export const auth = createClient(AuthService, transport);
export const audit = createClient(AuditService, transport);
export const billing = createClient(BillingService, transport);
export const quotas = createClient(QuotasService, transport);
export const notifications = createClient(NotificationsService, transport);

/** A fresh idempotency key for one user action (a retry reuses it). */
export function requestId(): string {
  return crypto.randomUUID();
}

let timer: ReturnType<typeof setTimeout> | undefined;

/**
 * Keeps the session's access token fresh: refreshed a minute before it
 * expires (or at once when that is past). An impersonation token has no
 * refresh token and simply ends.
 */
export function scheduleRefresh(): void {
  clearTimeout(timer);
  const s = getSession();
  if (!s || !s.refreshToken) return;
  const wait = Math.max(0, s.accessExpires - Date.now() - 60_000);
  timer = setTimeout(async () => {
    const now = getSession();
    if (!now || now.refreshToken !== s.refreshToken) return;
    try {
      const res = await auth.refresh({ refreshToken: s.refreshToken });
      const t = res.tokens!;
      setSession({
        ...now,
        accessToken: t.accessToken,
        accessExpires: expiry(t.accessTokenExpireTime),
        refreshToken: t.refreshToken,
      });
      scheduleRefresh();
    } catch {
      // The refresh token was revoked or expired: sign in again.
      setSession(null);
    }
  }, wait);
}
