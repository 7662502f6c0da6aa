// What an API error means, in words: field violations by field, a refusal's
// reason explained, the status code named. Never "unknown error".
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "../gen/google/rpc/error_details_pb";
import { humanize } from "../lib/format";

export interface Explained {
  code: Code | undefined;
  /** One line for a banner. */
  message: string;
  reason?: string;
  /** Field path (as the API names it) -> what is wrong with it. */
  fields: Record<string, string>;
}

const REASONS: Record<string, string> = {
  INSUFFICIENT_FUNDS: "Insufficient funds: the balance cannot go below zero",
  EMAIL_TAKEN: "That email is already used by another account",
  EMAIL_UNCHANGED: "That is already the user's email",
  EMAIL_BLOCKED: "That email may not register again (erased under pseudo-anonymization)",
  ETAG_MISMATCH: "Someone changed this user meanwhile; reload and try again",
  ILLEGAL_STATUS_TRANSITION: "The user's current status does not allow this change",
  STATUS_UNCHANGED: "The user already has that status",
  GROUP_UNCHANGED: "The user is already in that group",
  USER_NOT_FOUND: "No such user",
  USER_DELETED: "The user's personal data was deleted",
  USER_DESTROYED: "The account is destroyed",
  TOTP_REQUIRED: "Enter the code from your authenticator app",
  ACCOUNT_LOCKED: "Too many failed sign-ins: the account is locked for a while (an administrator can unblock it)",
  INVALID_CREDENTIALS: "Wrong email, password or code",
  TOKEN_REVOKED: "This session was revoked; sign in again",
  TOKEN_MISSING: "Not signed in",
  ROLE_REQUIRED: "Your account lacks the role this action needs (USER_ADMIN)",
  NOT_YOUR_RESOURCE: "This belongs to another user",
  FORBIDDEN_WHILE_IMPERSONATING: "Not allowed while signed in as another user",
  IMPERSONATION_ENDED: "The sign-in-as-user session has ended",
  SESSION_ENDED: "The session has ended",
  RATE_LIMITED: "Too many requests; wait a moment and try again",
  TWO_FACTOR_ALREADY_ENABLED: "Two-factor authentication is already on",
  NO_TOTP_ENROLLMENT: "Two-factor enrollment was not started",
  SUBSCRIPTION_NOT_ACTIVE: "The subscription is not active",
  GROUP_EXISTS: "A group with that name exists",
  DATABASE_UNAVAILABLE: "The database is unavailable; try again shortly",
};

const CODES: Partial<Record<Code, string>> = {
  [Code.PermissionDenied]: "Permission denied",
  [Code.Unauthenticated]: "Not signed in, or the session expired",
  [Code.InvalidArgument]: "Some fields are not valid",
  [Code.FailedPrecondition]: "Refused",
  [Code.NotFound]: "Not found",
  [Code.AlreadyExists]: "Already exists",
  [Code.Aborted]: "Changed meanwhile; try again",
  [Code.ResourceExhausted]: "Too many requests; try again shortly",
  [Code.Unavailable]: "The service is unavailable",
  [Code.Unimplemented]: "Not available in this release",
  [Code.DeadlineExceeded]: "The call took too long",
  [Code.Internal]: "Internal error in the service",
  [Code.Unknown]: "The gateway returned an error it did not classify",
  [Code.Canceled]: "Cancelled",
};

export function explainReason(reason: string): string {
  return REASONS[reason] ?? humanize(reason);
}

export function explain(err: unknown): Explained {
  if (!(err instanceof ConnectError)) {
    const message = err instanceof Error ? err.message : String(err);
    return { code: undefined, message: message || "The request failed", fields: {} };
  }
  const fields: Record<string, string> = {};
  for (const br of err.findDetails(BadRequestSchema)) {
    for (const v of br.fieldViolations) fields[v.field] = v.description;
  }
  const info = err.findDetails(ErrorInfoSchema)[0];
  const reason = info?.reason;
  const head = CODES[err.code] ?? Code[err.code];
  let message: string;
  if (reason && REASONS[reason] && err.code !== Code.PermissionDenied) message = REASONS[reason];
  else if (reason) message = `${head}: ${explainReason(reason)}`;
  else if (err.code === Code.PermissionDenied) message = `Permission denied: ${err.rawMessage || "your account may not do this"}`;
  else if (Object.keys(fields).length) message = `${head}: ${Object.entries(fields).map(([f, d]) => `${f}: ${d}`).join("; ")}`;
  else message = err.rawMessage ? `${head}: ${err.rawMessage}` : head;
  return { code: err.code, message, reason, fields };
}

/** The service behind a tab is not part of this release (not served by the gateway). */
export function notServed(err: unknown): boolean {
  return err instanceof ConnectError && (err.code === Code.Unimplemented || err.code === Code.Unavailable);
}
