// The user frame's tabs other than Info.
import { useMemo, useState } from "react";
import { useInfiniteQuery, useQuery, useQueryClient } from "@tanstack/react-query";
import type { ColumnDef } from "@tanstack/react-table";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { accounts, audit, billing, quotas, requestId } from "../api/client";
import { notServed } from "../api/errors";
import {
  CollaborationDirection,
  CollaborationStatus,
  type Collaboration,
} from "../gen/steward/accounts/v1/accounts_service_pb";
import {
  Interval,
  Operation as LedgerOperation,
  BalanceType,
  SubscriptionStatus,
  type BillingHistoryRow,
  type LedgerEntry,
  type Subscription,
} from "../gen/steward/billing/v1/billing_service_pb";
import { Category } from "../gen/steward/audit/v1/audit_event_pb";
import type { StoredEvent } from "../gen/steward/audit/v1/audit_service_pb";
import { Result } from "../gen/steward/common/v1/common_pb";
import { QuotaSource, QuotaType, type QuotaValue, type UserQuota } from "../gen/steward/quotas/v1/quotas_service_pb";
import { DataTable, DateRange, Dialog, ErrorBanner, FieldError, NotAvailable, Progress } from "../components/ui";
import { dayBound, formatDateTime, formatDuration, formatMoney, isoDay } from "../lib/format";

export function defaultRange(days = 30): [string, string] {
  const end = new Date();
  const start = new Date(end.getTime() - days * 86_400_000);
  return [isoDay(start), isoDay(end)];
}

export function rangeTimestamps(start: string, end: string) {
  const s = dayBound(start, false);
  const e = dayBound(end, true);
  return { startTime: s && timestampFromDate(s), endTime: e && timestampFromDate(e) };
}

export function useActionTitles() {
  return useQuery({
    queryKey: ["action-types"],
    queryFn: async () => (await audit.listActionTypes({})).products,
    staleTime: 300_000,
    select: (products) => {
      const titles = new Map<string, string>();
      for (const p of products) for (const a of p.actionTypes) titles.set(a.action, a.title);
      return { products, titles };
    },
  });
}

export const CATEGORY: Record<number, string> = {
  [Category.PUBLIC]: "PUBLIC",
  [Category.SYSTEM]: "SYSTEM",
  [Category.ADMIN]: "ADMIN",
};

export function resultText(e: StoredEvent["event"]): string {
  if (!e) return "";
  if (e.result === Result.SUCCESS) return "Success";
  if (e.result === Result.IN_PROGRESS) return "In progress";
  if (e.result === Result.FAILURE) return e.errorMessage ? `Failure: ${e.errorMessage}` : "Failure";
  return "";
}

export function EnvironmentsTab({ userId }: { userId: string }) {
  const envs = useQuery({
    queryKey: ["environments", userId],
    queryFn: async () => (await billing.listEnvironments({ userId })).environments,
  });
  return (
    <>
      <ErrorBanner error={envs.error} />
      {envs.isLoading && <Progress label="Loading environments…" />}
      <table className="grid" aria-label="Environments">
        <thead>
          <tr>
            <th>Environment</th>
            <th>Nodes</th>
            <th>Last usage</th>
          </tr>
        </thead>
        <tbody>
          {envs.data?.map((e) => (
            <tr key={e.name}>
              <td>{e.name}</td>
              <td className="mono">{e.nodeIds.join(", ")}</td>
              <td>{formatDateTime(e.lastUsageTime)}</td>
            </tr>
          ))}
          {envs.data?.length === 0 && (
            <tr>
              <td colSpan={3} className="empty">
                No environments in this user's usage
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </>
  );
}

const SUB_STATUS: Record<number, string> = {
  [SubscriptionStatus.ACTIVE]: "Active",
  [SubscriptionStatus.CANCELLED]: "Cancelled",
  [SubscriptionStatus.EXPIRED]: "Expired",
};

export function SubscriptionsTab({ userId }: { userId: string }) {
  const subs = useQuery({
    queryKey: ["subscriptions", userId],
    queryFn: async () => (await billing.listSubscriptions({ userId })).subscriptions,
  });
  const [selected, setSelected] = useState<Subscription | null>(null);
  const invoices = useQuery({
    queryKey: ["invoices", selected?.id],
    queryFn: async () => (await billing.listInvoices({ subscriptionId: selected!.id })).invoices,
    enabled: !!selected,
  });
  const columns = useMemo<ColumnDef<Subscription, unknown>[]>(
    () => [
      { header: "Product", cell: ({ row }) => row.original.product },
      { header: "Plan", cell: ({ row }) => row.original.plan },
      { header: "Usage", cell: ({ row }) => `${row.original.environments.length} env.` },
      { header: "Status", cell: ({ row }) => SUB_STATUS[row.original.status] ?? "" },
      { header: "Cost", cell: ({ row }) => <span className="num">{formatMoney(row.original.cost?.value)}</span> },
      { header: "Period", cell: ({ row }) => `${row.original.periodDays} days` },
      { header: "Created", cell: ({ row }) => formatDateTime(row.original.createTime) },
      { header: "Ends", cell: ({ row }) => formatDateTime(row.original.endTime) },
      { header: "ID", cell: ({ row }) => <span className="mono">{row.original.id}</span> },
    ],
    [],
  );
  return (
    <>
      <ErrorBanner error={subs.error} />
      {subs.isLoading && <Progress label="Loading subscriptions…" />}
      <DataTable
        label="Subscriptions"
        data={subs.data ?? []}
        columns={columns}
        getRowId={(s) => s.id}
        selectedId={selected?.id}
        onRowClick={setSelected}
        empty="No subscriptions"
      />
      {selected && (
        <div className="below">
          <h3>Usage</h3>
          <ul aria-label="Usage environments">
            {selected.environments.map((e) => (
              <li key={e}>{e}</li>
            ))}
            {selected.environments.length === 0 && <li className="muted">No environments</li>}
          </ul>
          <h3>Invoices</h3>
          <ErrorBanner error={invoices.error} />
          <table className="grid" aria-label="Invoices">
            <thead>
              <tr>
                <th>Period start</th>
                <th>Period end</th>
                <th>Amount</th>
                <th>Created</th>
                <th>ID</th>
              </tr>
            </thead>
            <tbody>
              {invoices.data?.map((i) => (
                <tr key={i.id}>
                  <td>{formatDateTime(i.periodStart)}</td>
                  <td>{formatDateTime(i.periodEnd)}</td>
                  <td className="num">{formatMoney(i.amount?.value)}</td>
                  <td>{formatDateTime(i.createTime)}</td>
                  <td className="mono">{i.id}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

export function AuditLogTab({ userId }: { userId: string }) {
  const [[start, end], setRange] = useState(defaultRange(30));
  const [applied, setApplied] = useState<[string, string]>([start, end]);
  const titles = useActionTitles();
  const events = useInfiniteQuery({
    queryKey: ["user-audit", userId, applied],
    initialPageParam: "",
    queryFn: async ({ pageParam }) =>
      audit.listEvents({
        filter: { subjectUserId: userId, ...rangeTimestamps(applied[0], applied[1]) },
        page: { pageSize: 100, pageToken: pageParam },
      }),
    getNextPageParam: (last) => last.page?.nextPageToken || undefined,
  });
  const rows = events.data?.pages.flatMap((p) => p.events) ?? [];
  return (
    <>
      <div className="toolbar">
        <DateRange start={start} end={end} onStart={(v) => setRange([v, end])} onEnd={(v) => setRange([start, v])} />
        <button
          onClick={() => {
            setApplied([start, end]);
            void events.refetch();
          }}
        >
          Refresh
        </button>
      </div>
      <ErrorBanner error={events.error} />
      {events.isFetching && <Progress label="Loading the audit log…" />}
      <table className="grid" aria-label="Audit log">
        <thead>
          <tr>
            <th>Date</th>
            <th>Action</th>
            <th>Type</th>
            <th>User ID</th>
            <th>Impersonator</th>
            <th>Duration</th>
            <th>Result</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(({ event: e, sequence }) => {
            const byOther = !!e && !!e.actorUserId && e.actorUserId !== userId;
            return (
              <tr key={String(sequence)} className={byOther ? "highlight" : undefined}>
                <td>{formatDateTime(e?.occurredAt)}</td>
                <td title={e?.action}>{(e && titles.data?.titles.get(e.action)) || e?.action}</td>
                <td>{e ? CATEGORY[e.category] ?? "" : ""}</td>
                <td className="mono">{byOther ? e!.actorUserId : ""}</td>
                <td className="mono">{e?.impersonatorUserId}</td>
                <td>{formatDuration(e?.duration)}</td>
                <td>{resultText(e)}</td>
              </tr>
            );
          })}
          {!events.isFetching && rows.length === 0 && (
            <tr>
              <td colSpan={7} className="empty">
                No actions in this period
              </td>
            </tr>
          )}
        </tbody>
      </table>
      {events.hasNextPage && (
        <button onClick={() => void events.fetchNextPage()} disabled={events.isFetchingNextPage}>
          More
        </button>
      )}
    </>
  );
}

export function BillingHistoryTab({ userId }: { userId: string }) {
  const [[start, end], setRange] = useState(defaultRange(7));
  const [interval, setInterval] = useState(Interval.DAY);
  const [groupByNode, setGroupByNode] = useState(false);
  const [applied, setApplied] = useState({ start, end, interval, groupByNode });
  const history = useQuery({
    queryKey: ["billing-history", userId, applied],
    queryFn: async () =>
      billing.getBillingHistory({
        userId,
        ...rangeTimestamps(applied.start, applied.end),
        interval: applied.interval,
        groupByNode: applied.groupByNode,
      }),
  });
  const row = (r: BillingHistoryRow, key: string, total = false) => (
    <tr key={key} className={total ? "total" : undefined}>
      <td>{total ? "Total" : formatDateTime(r.intervalStart)}</td>
      <td>{r.environment}</td>
      <td className="mono">{r.item}</td>
      <td className="num">{r.reservedCloudlets?.value}</td>
      <td className="num">{r.dynamicCloudlets?.value}</td>
      <td className="num">{r.storage?.value}</td>
      <td className="num">{r.traffic?.value}</td>
      <td className="num">{formatMoney(r.cost?.value)}</td>
    </tr>
  );
  return (
    <>
      <div className="toolbar">
        <DateRange start={start} end={end} onStart={(v) => setRange([v, end])} onEnd={(v) => setRange([start, v])} />
        <label>
          Interval
          <select value={interval} onChange={(e) => setInterval(Number(e.target.value))}>
            <option value={Interval.HOUR}>Hour</option>
            <option value={Interval.DAY}>Day</option>
            <option value={Interval.WEEK}>Week</option>
            <option value={Interval.MONTH}>Month</option>
          </select>
        </label>
        <label className="check">
          <input type="checkbox" checked={groupByNode} onChange={(e) => setGroupByNode(e.target.checked)} /> Group by node
        </label>
        <button onClick={() => setApplied({ start, end, interval, groupByNode })}>Refresh</button>
      </div>
      <ErrorBanner error={history.error} />
      {history.isFetching && <Progress label="Loading billing history…" />}
      <table className="grid" aria-label="Billing history">
        <thead>
          <tr>
            <th>Period</th>
            <th>Environment</th>
            <th>Item</th>
            <th>Reserved cloudlets</th>
            <th>Dynamic cloudlets</th>
            <th>Paid storage (GB)</th>
            <th>Paid traffic (GB)</th>
            <th>Cost</th>
          </tr>
        </thead>
        <tbody>
          {history.data?.rows.map((r, i) => row(r, String(i)))}
          {history.data?.rows.length === 0 && (
            <tr>
              <td colSpan={8} className="empty">
                No usage in this period
              </td>
            </tr>
          )}
        </tbody>
        {history.data?.totals && history.data.rows.length > 0 && <tfoot>{row(history.data.totals, "t", true)}</tfoot>}
      </table>
    </>
  );
}

export const OPERATION_NAMES: Record<number, string> = {
  [LedgerOperation.FUNDING]: "Funding",
  [LedgerOperation.BONUS_FUNDING]: "Bonus funding",
  [LedgerOperation.REGISTRATION_BONUS]: "Registration bonus funding (trial)",
  [LedgerOperation.EXTRA_BONUS]: "Extra bonus funding (auto)",
  [LedgerOperation.WITHDRAWAL]: "Withdrawal",
  [LedgerOperation.BONUS_WITHDRAWAL]: "Bonus withdrawal",
  [LedgerOperation.CHARGE]: "Charge",
};

export function FundingHistoryTab({ userId }: { userId: string }) {
  const [[start, end], setRange] = useState(defaultRange(30));
  const [applied, setApplied] = useState<[string, string]>([start, end]);
  const history = useInfiniteQuery({
    queryKey: ["funding", userId, applied],
    initialPageParam: "",
    queryFn: async ({ pageParam }) =>
      billing.listFundingHistory({
        userId,
        ...rangeTimestamps(applied[0], applied[1]),
        page: { pageSize: 100, pageToken: pageParam },
      }),
    getNextPageParam: (last) => last.page?.nextPageToken || undefined,
  });
  const totals = history.data?.pages[0]?.totals ?? [];
  const entries: LedgerEntry[] = history.data?.pages.flatMap((p) => p.entries) ?? [];
  return (
    <>
      <div className="toolbar">
        <DateRange start={start} end={end} onStart={(v) => setRange([v, end])} onEnd={(v) => setRange([start, v])} />
        <button
          onClick={() => {
            setApplied([start, end]);
            void history.refetch();
          }}
        >
          Refresh
        </button>
      </div>
      <ErrorBanner error={history.error} />
      {history.isFetching && <Progress label="Loading funding history…" />}
      <table className="grid" aria-label="Funding totals">
        <thead>
          <tr>
            <th>Operation</th>
            <th>Count</th>
            <th>Amount</th>
          </tr>
        </thead>
        <tbody>
          {totals.map((t) => (
            <tr key={t.operation}>
              <td>{OPERATION_NAMES[t.operation] ?? ""}</td>
              <td className="num">{String(t.count)}</td>
              <td className="num">{formatMoney(t.amount?.value)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <table className="grid" aria-label="Funding operations">
        <thead>
          <tr>
            <th>Date</th>
            <th>Payment size</th>
            <th>Billing operation</th>
            <th>Balance</th>
            <th>Balance after</th>
            <th>Notes</th>
          </tr>
        </thead>
        <tbody>
          {entries.map((e) => (
            <tr key={e.id}>
              <td>{formatDateTime(e.createTime)}</td>
              <td className="num">{formatMoney(e.amount?.value)}</td>
              <td>{OPERATION_NAMES[e.operation] ?? ""}</td>
              <td>{e.balanceType === BalanceType.BONUS ? "Bonus" : "Main"}</td>
              <td className="num">{formatMoney(e.balanceAfter?.value)}</td>
              <td>{e.notes}</td>
            </tr>
          ))}
          {!history.isFetching && entries.length === 0 && (
            <tr>
              <td colSpan={6} className="empty">
                No operations in this period
              </td>
            </tr>
          )}
        </tbody>
      </table>
      {history.hasNextPage && (
        <button onClick={() => void history.fetchNextPage()} disabled={history.isFetchingNextPage}>
          More
        </button>
      )}
    </>
  );
}

const COLLAB_STATUS: Record<number, string> = {
  [CollaborationStatus.PENDING]: "Pending",
  [CollaborationStatus.ACTIVE]: "Active",
  [CollaborationStatus.REVOKED]: "Revoked",
};

export function CollaborationTab({ userId }: { userId: string }) {
  const [direction, setDirection] = useState(CollaborationDirection.SHARED_BY_USER);
  const list = useQuery({
    queryKey: ["collaborations", userId, direction],
    queryFn: async () => (await accounts.listCollaborations({ userId, direction, page: { pageSize: 200 } })).collaborations,
  });
  const by = direction === CollaborationDirection.SHARED_BY_USER;
  const other = (c: Collaboration) => (by ? [c.collaboratorEmail, c.collaboratorUserId] : [c.ownerEmail, c.ownerUserId]);
  return (
    <>
      <div className="toolbar">
        <select value={direction} onChange={(e) => setDirection(Number(e.target.value))} aria-label="Direction">
          <option value={CollaborationDirection.SHARED_BY_USER}>Shared by user</option>
          <option value={CollaborationDirection.SHARED_WITH_USER}>Shared with user</option>
        </select>
        <button onClick={() => void list.refetch()}>Refresh</button>
      </div>
      <ErrorBanner error={list.error} />
      <table className="grid" aria-label="Collaboration">
        <thead>
          <tr>
            <th>{by ? "Collaborator" : "Owner"}</th>
            <th>User ID</th>
            <th>Status</th>
            <th>Created</th>
            <th>Updated</th>
          </tr>
        </thead>
        <tbody>
          {list.data?.map((c) => (
            <tr key={c.id}>
              <td>{other(c)[0]}</td>
              <td className="mono">{other(c)[1]}</td>
              <td>{COLLAB_STATUS[c.status] ?? ""}</td>
              <td>{formatDateTime(c.createTime)}</td>
              <td>{formatDateTime(c.updateTime)}</td>
            </tr>
          ))}
          {list.data?.length === 0 && (
            <tr>
              <td colSpan={5} className="empty">
                {by ? "Nobody has access to this account" : "This user has access to no other account"}
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </>
  );
}

const SOURCE: Record<number, string> = {
  [QuotaSource.OVERRIDE]: "User override",
  [QuotaSource.GROUP]: "Group",
  [QuotaSource.DEFAULT]: "Default",
};

export function quotaText(v: QuotaValue | undefined): string {
  if (!v) return "";
  if (v.kind.case === "unlimited") return "Unlimited";
  if (v.kind.case === "value") return v.kind.value;
  return "";
}

export function QuotasTab({ userId }: { userId: string }) {
  const [search, setSearch] = useState("");
  const [applied, setApplied] = useState("");
  const [editing, setEditing] = useState<UserQuota | null>(null);
  const [selected, setSelected] = useState<UserQuota | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const qc = useQueryClient();
  const list = useInfiniteQuery({
    queryKey: ["quotas", userId, applied],
    initialPageParam: "",
    queryFn: async ({ pageParam }) =>
      quotas.getUserQuotas({ userId, keyContains: applied, page: { pageSize: 200, pageToken: pageParam } }),
    getNextPageParam: (last) => last.page?.nextPageToken || undefined,
  });
  if (list.error && notServed(list.error)) return <NotAvailable what="Quotas are" />;
  const rows = list.data?.pages.flatMap((p) => p.quotas) ?? [];
  const group = list.data?.pages[0]?.group;
  async function reset(q: UserQuota) {
    setBusy(true);
    setError(null);
    try {
      await quotas.resetUserQuotas({ userIds: [userId], keys: [q.key], reason: "reset to group value in the console", requestId: requestId() });
      await qc.invalidateQueries({ queryKey: ["quotas", userId] });
      setSelected(null);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }
  return (
    <>
      <form
        className="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied(search.trim());
        }}
      >
        <input type="search" placeholder="Search quotas" aria-label="Search quotas" value={search} onChange={(e) => setSearch(e.target.value)} />
        <button type="submit">Search</button>
        <button
          type="button"
          disabled={!selected || selected.source !== QuotaSource.OVERRIDE || busy}
          onClick={() => selected && void reset(selected)}
        >
          Reset to group value
        </button>
        {group && <span className="muted">Group: {group}. Double-click a line to edit it.</span>}
      </form>
      <ErrorBanner error={list.error} />
      <ErrorBanner error={error} />
      {list.isFetching && <Progress label="Loading quotas…" />}
      <table className="grid" aria-label="Quotas">
        <thead>
          <tr>
            <th>Quota</th>
            <th>Description</th>
            <th>Value</th>
            <th>From</th>
            <th>Group value</th>
            <th>Unit</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((q) => (
            <tr
              key={q.key}
              data-key={q.key}
              className={selected?.key === q.key ? "selected" : undefined}
              onClick={() => setSelected(q)}
              onDoubleClick={() => setEditing(q)}
            >
              <td className="mono">{q.key}</td>
              <td>{q.description}</td>
              <td className="num">{quotaText(q.effectiveValue)}</td>
              <td>{SOURCE[q.source] ?? ""}</td>
              <td className="num">{quotaText(q.groupValue)}</td>
              <td>{q.unit}</td>
            </tr>
          ))}
          {!list.isFetching && rows.length === 0 && (
            <tr>
              <td colSpan={6} className="empty">
                No quotas match
              </td>
            </tr>
          )}
        </tbody>
      </table>
      {list.hasNextPage && <button onClick={() => void list.fetchNextPage()}>More</button>}
      {editing && (
        <QuotaEdit
          userId={userId}
          quota={editing}
          onClose={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            void qc.invalidateQueries({ queryKey: ["quotas", userId] });
          }}
        />
      )}
    </>
  );
}

function QuotaEdit({ userId, quota, onClose, onSaved }: { userId: string; quota: UserQuota; onClose: () => void; onSaved: () => void }) {
  const current = quota.effectiveValue;
  const [unlimited, setUnlimited] = useState(current?.kind.case === "unlimited");
  const [value, setValue] = useState(current?.kind.case === "value" ? current.kind.value : "");
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [key] = useState(requestId);
  const canUnlimited = quota.type !== QuotaType.FLAG && quota.type !== QuotaType.ENUM;
  return (
    <Dialog title={`Edit ${quota.key}`} onClose={onClose}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            await quotas.setUserQuotas({
              userIds: [userId],
              settings: [{ key: quota.key, value: { kind: unlimited ? { case: "unlimited", value: true } : { case: "value", value } } }],
              reason,
              requestId: key,
            });
            onSaved();
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <p className="muted">
          {quota.description} Group value: {quotaText(quota.groupValue)} {quota.unit}
        </p>
        <label>
          Value
          {quota.type === QuotaType.ENUM ? (
            <select value={value} onChange={(e) => setValue(e.target.value)} aria-label="Value">
              {quota.allowedValues.map((v) => (
                <option key={v}>{v}</option>
              ))}
            </select>
          ) : quota.type === QuotaType.FLAG ? (
            <select value={value} onChange={(e) => setValue(e.target.value)} aria-label="Value">
              <option value="1">1 (on)</option>
              <option value="0">0 (off)</option>
            </select>
          ) : (
            <input value={value} disabled={unlimited} onChange={(e) => setValue(e.target.value)} aria-label="Value" autoFocus />
          )}
        </label>
        {canUnlimited && (
          <label className="check">
            <input type="checkbox" checked={unlimited} onChange={(e) => setUnlimited(e.target.checked)} /> Unlimited
          </label>
        )}
        <FieldError error={error} field="settings[0].value" />
        <label>
          Reason
          <input value={reason} onChange={(e) => setReason(e.target.value)} aria-label="Reason" required />
        </label>
        <FieldError error={error} field="reason" />
        <ErrorBanner error={error} />
        <div className="buttons">
          <button type="button" onClick={onClose} disabled={busy}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy}>
            Update
          </button>
        </div>
      </form>
    </Dialog>
  );
}
