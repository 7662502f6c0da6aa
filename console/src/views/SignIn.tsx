import { useState, type FormEvent } from "react";
import { auth, scheduleRefresh } from "../api/client";
import { claims, expiry, setSession } from "../api/session";
import { explain } from "../api/errors";
import { FieldError } from "../components/ui";

export function SignIn() {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [needCode, setNeedCode] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const res = await auth.signIn({ email, password, totpCode: code, device: `console: ${navigator.userAgent}` });
      const t = res.tokens!;
      const c = claims(t.accessToken);
      setSession({
        accessToken: t.accessToken,
        accessExpires: expiry(t.accessTokenExpireTime),
        refreshToken: t.refreshToken,
        userId: res.userId,
        email,
        roles: c.roles ?? [],
      });
      scheduleRefresh();
    } catch (err) {
      if (explain(err).reason === "TOTP_REQUIRED") {
        setNeedCode(true);
        if (code) setError(err);
      } else {
        setError(err);
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="center">
      <form className="card signin" onSubmit={submit} aria-label="Sign in">
        <h1>Steward console</h1>
        <label>
          Email
          <input type="email" autoComplete="username" value={email} onChange={(e) => setEmail(e.target.value)} required />
        </label>
        <FieldError error={error} field="email" />
        <label>
          Password
          <input
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </label>
        {needCode && (
          <>
            <label>
              Two-factor code
              <input
                inputMode="numeric"
                autoComplete="one-time-code"
                pattern="[0-9]{6}"
                value={code}
                autoFocus
                onChange={(e) => setCode(e.target.value)}
              />
            </label>
            <p className="hint">Enter the 6-digit code from your authenticator app.</p>
          </>
        )}
        {error !== null && (
          <div className="error" role="alert">
            {explain(error).message}
          </div>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Signing in…" : needCode ? "Verify" : "Sign in"}
        </button>
      </form>
    </div>
  );
}
