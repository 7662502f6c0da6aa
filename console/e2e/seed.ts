// Seeds the suite through the gateway with real gRPC-Web calls (the same
// generated clients the console uses), and the administrator with
// `steward user create-admin`.
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { randomUUID } from "node:crypto";
import { AccountsService, Role } from "../src/gen/steward/accounts/v1/accounts_service_pb";
import { AuthService } from "../src/gen/steward/accounts/v1/auth_service_pb";
import { BillingService, BalanceType } from "../src/gen/steward/billing/v1/billing_service_pb";
import { stewardCli, type Running } from "./steward";
import { totp } from "./totp";

export interface Seeded {
  gateway: string;
  dataDir: string;
  admin: { email: string; password: string; id: string; totpSecret: string; totpUsedStep: number };
  plain: { email: string; password: string; id: string };
  users: Record<string, { id: string; email: string }>;
}

export function clients(gateway: string, token?: () => string) {
  const bearer: Interceptor = (next) => async (req) => {
    const t = token?.();
    if (t) req.header.set("authorization", `Bearer ${t}`);
    return next(req);
  };
  const transport = createGrpcWebTransport({ baseUrl: gateway, interceptors: [bearer] });
  return {
    accounts: createClient(AccountsService, transport),
    auth: createClient(AuthService, transport),
    billing: createClient(BillingService, transport),
  };
}

export async function seed(r: Running): Promise<Seeded> {
  const admin = { email: "admin@console.e2e", password: "correct horse battery staple" };
  const out = stewardCli(r, ["user", "create-admin", "--email", admin.email, "--password", admin.password]);
  const id = /\(([0-9a-f-]{36})\)/.exec(out)?.[1];
  if (!id) throw new Error(`create-admin printed no id: ${out}`);
  let token = "";
  const c = clients(r.gateway, () => token);
  const signIn = await c.auth.signIn({ email: admin.email, password: admin.password, device: "e2e seed" });
  token = signIn.tokens!.accessToken;
  // Two-factor through the API, confirmed with a code computed here.
  const enrol = await c.auth.enrollTotp({ userId: id });
  const confirmedAt = Date.now();
  await c.auth.confirmTotp({ userId: id, code: totp(enrol.secret, confirmedAt) });

  const users: Seeded["users"] = {};
  const make = async (key: string, email: string, group: string, extra: { password?: string; roles?: Role[]; phone?: string; notes?: string } = {}) => {
    const res = await c.accounts.createUser({ requestId: randomUUID(), email, group, reseller: "acme", ...extra });
    users[key] = { id: res.user!.id, email };
  };
  await make("ann", "ann@console.e2e", "trial", { phone: "+15550100", notes: "first customer" });
  await make("bob", "bob@console.e2e", "trial");
  await make("cat", "cat@console.e2e", "beta");
  await make("dan", "dan@console.e2e", "billing");
  await make("eve", "eve@console.e2e", "trial");
  await make("quinn", "quinn@console.e2e", "trial");
  await make("ivy", "ivy@console.e2e", "trial");
  const plainPassword = "plain user password 1";
  await make("plain", "plain@console.e2e", "trial", { password: plainPassword, roles: [Role.USER] });
  await c.billing.refill({ requestId: randomUUID(), userId: users.dan.id, amount: { value: "40.00" }, balanceType: BalanceType.MAIN, notes: "seed" });
  return {
    gateway: r.gateway,
    dataDir: r.env.STEWARD_DATA_DIR!,
    admin: { ...admin, id, totpSecret: enrol.secret, totpUsedStep: Math.floor(confirmedAt / 30_000) },
    plain: { email: "plain@console.e2e", password: plainPassword, id: users.plain.id },
    users,
  };
}
