import { useMemo, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import type { ColumnDef, RowSelectionState } from "@tanstack/react-table";
import { accounts, billing } from "../api/client";
import { UserStatus, type User } from "../gen/steward/accounts/v1/accounts_service_pb";
import type { Balance } from "../gen/steward/billing/v1/billing_service_pb";
import { DataTable, ErrorBanner, Progress, StatusIcon } from "../components/ui";
import { formatDate, formatMoney, plural } from "../lib/format";
import { navigate, useLocation, withParams } from "../lib/router";
import { UserFrame } from "./UserFrame";
import { Operations, type Operation } from "./operations";

const PAGE = 50;

export const STATUS_FILTERS: { value: string; label: string; status: UserStatus }[] = [
  { value: "", label: "All statuses", status: UserStatus.UNSPECIFIED },
  { value: "active", label: "Active", status: UserStatus.ACTIVE },
  { value: "inactive", label: "Inactive", status: UserStatus.INACTIVE },
  { value: "suspended", label: "Suspended", status: UserStatus.SUSPENDED },
  { value: "destroyed", label: "Destroyed", status: UserStatus.DESTROYED },
  { value: "deleted", label: "Deleted", status: UserStatus.DELETED },
];

export function useGroups() {
  return useQuery({
    queryKey: ["groups"],
    queryFn: async () => (await accounts.listGroups({ page: { pageSize: 200 } })).groups,
    staleTime: 60_000,
  });
}

export function UsersPanel() {
  const { params } = useLocation();
  const group = params.get("group") ?? "";
  const status = params.get("status") ?? "";
  const q = params.get("q") ?? "";
  const page = params.get("page") ?? "";
  const selectedUser = params.get("user") ?? "";
  const [search, setSearch] = useState(q);
  const [prevPages, setPrevPages] = useState<string[]>([]);
  const [selection, setSelection] = useState<RowSelectionState>({});
  const [operation, setOperation] = useState<Operation | null>(null);
  const groups = useGroups();

  const statusValue = STATUS_FILTERS.find((s) => s.value === status)?.status ?? UserStatus.UNSPECIFIED;
  const users = useQuery({
    queryKey: ["users", group, status, q, page],
    queryFn: async () => {
      const res = await accounts.listUsers({
        group,
        status: statusValue,
        query: q.trim(),
        page: { pageSize: PAGE, pageToken: page },
      });
      const ids = res.users.map((u) => u.id);
      let balances: Balance[] = [];
      if (ids.length) balances = (await billing.batchGetBalances({ userIds: ids })).balances;
      return { users: res.users, next: res.page?.nextPageToken ?? "", balances: new Map(balances.map((b) => [b.userId, b])) };
    },
  });
  const rows = useMemo(() => users.data?.users ?? [], [users.data]);
  const byId = useMemo(() => new Map(rows.map((u) => [u.id, u])), [rows]);

  const columns = useMemo<ColumnDef<User, unknown>[]>(
    () => [
      {
        id: "select",
        size: 28,
        header: ({ table }) => (
          <input
            type="checkbox"
            aria-label="Select all on this page"
            checked={table.getIsAllRowsSelected()}
            onChange={table.getToggleAllRowsSelectedHandler()}
          />
        ),
        cell: ({ row }) => (
          <input
            type="checkbox"
            aria-label={`Select ${row.original.email}`}
            checked={row.getIsSelected()}
            onClick={(e) => e.stopPropagation()}
            onChange={row.getToggleSelectedHandler()}
          />
        ),
      },
      { id: "status", size: 28, header: "", cell: ({ row }) => <StatusIcon status={row.original.status} /> },
      {
        id: "login",
        header: "Login",
        cell: ({ row }) => (
          <span>
            {row.original.email}
            {row.original.upgradeInProgress && (
              <span className="upgrade" title="Upgrade to a billing group in progress" aria-label="upgrade in progress">
                {" "}
                ⬆
              </span>
            )}
          </span>
        ),
      },
      {
        id: "id",
        header: "User ID",
        cell: ({ row }) => (
          <a
            href={withParams({ user: row.original.id })}
            className="mono"
            onClick={(e) => {
              e.preventDefault();
              e.stopPropagation();
              navigate(withParams({ user: row.original.id }));
            }}
          >
            {row.original.id}
          </a>
        ),
      },
      { id: "group", header: "Group", cell: ({ row }) => row.original.group },
      {
        id: "balance",
        header: "Balance",
        cell: ({ row }) => <span className="num">{formatMoney(users.data?.balances.get(row.original.id)?.main?.value)}</span>,
      },
      {
        id: "bonus",
        header: "Bonus",
        cell: ({ row }) => <span className="num">{formatMoney(users.data?.balances.get(row.original.id)?.bonus?.value)}</span>,
      },
      { id: "phone", header: "Phone", cell: ({ row }) => row.original.phone ?? "" },
      { id: "signup", header: "Signup date", cell: ({ row }) => formatDate(row.original.signupTime) },
      { id: "reseller", header: "Reseller", cell: ({ row }) => row.original.reseller },
      { id: "notes", header: "Notes", cell: ({ row }) => <span className="notes">{row.original.notes}</span> },
    ],
    [users.data],
  );

  const selectedIds = Object.keys(selection).filter((k) => selection[k]);
  const targets = selectedIds.length ? selectedIds : selectedUser ? [selectedUser] : [];

  function apply(changes: Record<string, string | undefined>) {
    setSelection({});
    setPrevPages([]);
    navigate(withParams({ ...changes, page: undefined }));
  }

  return (
    <div className={selectedUser ? "split" : "split single"}>
      <section className="list">
        <div className="toolbar" role="toolbar" aria-label="Users filters">
          <label>
            Group
            <select value={group} onChange={(e) => apply({ group: e.target.value })} aria-label="Group filter">
              <option value="">All groups</option>
              {groups.data?.map((g) => (
                <option key={g.name} value={g.name}>
                  {g.displayName || g.name}
                </option>
              ))}
            </select>
          </label>
          <label>
            Status
            <select value={status} onChange={(e) => apply({ status: e.target.value })} aria-label="Status filter">
              {STATUS_FILTERS.map((s) => (
                <option key={s.value} value={s.value}>
                  {s.label}
                </option>
              ))}
            </select>
          </label>
          <form
            className="search"
            onSubmit={(e) => {
              e.preventDefault();
              apply({ q: search.trim() });
            }}
          >
            <input
              type="search"
              placeholder="Email or UID"
              aria-label="Email or UID"
              value={search}
              onChange={(e) => setSearch(e.target.value)}
            />
            <button type="submit">Search</button>
          </form>
        </div>
        <Operations
          targets={targets}
          users={byId}
          operation={operation}
          setOperation={setOperation}
          onDone={() => void users.refetch()}
        />
        <ErrorBanner error={users.error} />
        {users.isLoading && <Progress label="Loading users…" />}
        <DataTable
          label="Users"
          data={rows}
          columns={columns}
          getRowId={(u) => u.id}
          rowSelection={selection}
          onRowSelectionChange={setSelection}
          selectedId={selectedUser}
          onRowClick={(u) => navigate(withParams({ user: u.id }))}
          empty={users.isLoading ? "Loading…" : "No users match"}
        />
        <div className="pager">
          <span>
            {plural(rows.length, "user")} on this page
            {selectedIds.length > 0 && ` · ${selectedIds.length} selected`}
          </span>
          <button
            disabled={prevPages.length === 0}
            onClick={() => {
              const prev = prevPages[prevPages.length - 1];
              setPrevPages(prevPages.slice(0, -1));
              navigate(withParams({ page: prev || undefined }));
            }}
          >
            ‹ Previous
          </button>
          <button
            disabled={!users.data?.next}
            onClick={() => {
              setPrevPages([...prevPages, page]);
              navigate(withParams({ page: users.data!.next }));
            }}
          >
            Next ›
          </button>
        </div>
      </section>
      {selectedUser && (
        <UserFrame
          key={selectedUser}
          userId={selectedUser}
          onOperation={(op) => {
            setSelection({});
            setOperation(op);
          }}
          onChanged={() => void users.refetch()}
        />
      )}
    </div>
  );
}
