// "User actions": the audit trail by product or event type, period and any
// field, with the User history filter, and Export to XLSX (or CSV) of the
// current filter. The filter lives in the URL.
import { useState } from "react";
import { useInfiniteQuery } from "@tanstack/react-query";
import { audit } from "../api/client";
import { ExportFormat, type EventFilter } from "../gen/steward/audit/v1/audit_service_pb";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { EventFilterSchema } from "../gen/steward/audit/v1/audit_service_pb";
import { Category } from "../gen/steward/audit/v1/audit_event_pb";
import { Result } from "../gen/steward/common/v1/common_pb";
import { DateRange, ErrorBanner, FieldError, Progress } from "../components/ui";
import { formatDateTime } from "../lib/format";
import { navigate, useLocation, withParams } from "../lib/router";
import { CATEGORY, defaultRange, rangeTimestamps, resultText, useActionTitles } from "./UserTabs";

const TEXT_FILTERS = [
  ["subject", "User history (user ID)", "subjectUserId"],
  ["actor", "User", "actorUserId"],
  ["modified", "Modified user", "modifiedUserId"],
  ["impersonator", "Impersonator", "impersonatorUserId"],
  ["session", "Impersonation session", "impersonationSessionId"],
  ["token", "Token ID", "tokenId"],
  ["project", "Project", "project"],
  ["ip", "IP address", "clientIp"],
] as const;

type FilterInit = MessageInitShape<typeof EventFilterSchema>;

function filterFrom(params: URLSearchParams): FilterInit {
  const [d0, d1] = defaultRange(30);
  const f: FilterInit & Record<string, unknown> = {
    ...rangeTimestamps(params.get("start") ?? d0, params.get("end") ?? d1),
  };
  for (const [param, , field] of TEXT_FILTERS) {
    const v = params.get(param);
    if (v) f[field] = v.trim();
  }
  const product = params.get("product");
  if (product) f.product = product;
  const action = params.get("action");
  if (action) f.actions = [action];
  const category = Number(params.get("category") ?? 0);
  if (category) f.category = category as Category;
  const result = Number(params.get("result") ?? 0);
  if (result) f.result = result as Result;
  return f;
}

function comments(c: { [k: string]: string }): string {
  return Object.entries(c)
    .map(([k, v]) => `${k}: ${v}`)
    .join("; ");
}

export function UserActions() {
  const { params } = useLocation();
  const [d0, d1] = defaultRange(30);
  const [start, setStart] = useState(params.get("start") ?? d0);
  const [end, setEnd] = useState(params.get("end") ?? d1);
  const [draft, setDraft] = useState<Record<string, string>>(() =>
    Object.fromEntries(TEXT_FILTERS.map(([p]) => [p, params.get(p) ?? ""])),
  );
  const [showFilters, setShowFilters] = useState(TEXT_FILTERS.some(([p]) => params.get(p)));
  const [exporting, setExporting] = useState<{ bytes: number } | null>(null);
  const [exportError, setExportError] = useState<unknown>(null);
  const catalog = useActionTitles();
  const filter = filterFrom(params);
  const key = params.toString();
  const events = useInfiniteQuery({
    queryKey: ["actions", key],
    initialPageParam: "",
    queryFn: async ({ pageParam }) => audit.listEvents({ filter, page: { pageSize: 100, pageToken: pageParam } }),
    getNextPageParam: (last) => last.page?.nextPageToken || undefined,
  });
  const rows = events.data?.pages.flatMap((p) => p.events) ?? [];
  const product = params.get("product") ?? "";
  const productActions = catalog.data?.products.filter((p) => !product || p.product === product).flatMap((p) => p.actionTypes) ?? [];

  async function exportFile(format: ExportFormat) {
    setExporting({ bytes: 0 });
    setExportError(null);
    try {
      const chunks: Uint8Array<ArrayBuffer>[] = [];
      let name = format === ExportFormat.CSV ? "audit-events.csv" : "audit-events.xlsx";
      let type = "application/octet-stream";
      let bytes = 0;
      for await (const res of audit.exportEvents({ filter: filter as EventFilter, format })) {
        if (res.fileName) name = res.fileName;
        if (res.contentType) type = res.contentType;
        chunks.push(new Uint8Array(res.chunk));
        bytes += res.chunk.length;
        setExporting({ bytes });
      }
      const url = URL.createObjectURL(new Blob(chunks, { type }));
      const a = document.createElement("a");
      a.href = url;
      a.download = name;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      setExportError(err);
    } finally {
      setExporting(null);
    }
  }

  return (
    <section className="list">
      <div className="toolbar" role="toolbar" aria-label="User actions filters">
        <label>
          Product or event type
          <select
            value={product}
            aria-label="Product"
            onChange={(e) => navigate(withParams({ product: e.target.value, action: undefined }))}
          >
            <option value="">All products</option>
            {catalog.data?.products.map((p) => (
              <option key={p.product} value={p.product}>
                {p.product === "common" ? "Common events" : p.title || p.product}
              </option>
            ))}
          </select>
        </label>
        <label>
          Action
          <select value={params.get("action") ?? ""} aria-label="Action" onChange={(e) => navigate(withParams({ action: e.target.value }))}>
            <option value="">All actions</option>
            {productActions.map((a) => (
              <option key={a.action} value={a.action}>
                {a.title || a.action}
              </option>
            ))}
          </select>
        </label>
        <DateRange start={start} end={end} onStart={setStart} onEnd={setEnd} />
        <button onClick={() => navigate(withParams({ start, end }))}>Apply period</button>
        <button onClick={() => setShowFilters(!showFilters)} aria-expanded={showFilters}>
          Filters
        </button>
        <span className="spacer" />
        <button onClick={() => void exportFile(ExportFormat.XLSX)} disabled={!!exporting}>
          Export to XLSX
        </button>
        <button onClick={() => void exportFile(ExportFormat.CSV)} disabled={!!exporting}>
          Export to CSV
        </button>
      </div>
      {showFilters && (
        <form
          className="toolbar filters"
          aria-label="More filters"
          onSubmit={(e) => {
            e.preventDefault();
            navigate(withParams({ ...draft, start, end }));
          }}
        >
          {TEXT_FILTERS.map(([p, label]) => (
            <label key={p}>
              {label}
              <input value={draft[p]} onChange={(e) => setDraft({ ...draft, [p]: e.target.value })} aria-label={label} />
            </label>
          ))}
          <label>
            Type
            <select value={params.get("category") ?? ""} onChange={(e) => navigate(withParams({ category: e.target.value }))}>
              <option value="">Any</option>
              <option value={Category.PUBLIC}>PUBLIC</option>
              <option value={Category.SYSTEM}>SYSTEM</option>
              <option value={Category.ADMIN}>ADMIN</option>
            </select>
          </label>
          <label>
            Result
            <select value={params.get("result") ?? ""} onChange={(e) => navigate(withParams({ result: e.target.value }))}>
              <option value="">Any</option>
              <option value={Result.SUCCESS}>Success</option>
              <option value={Result.FAILURE}>Failure</option>
              <option value={Result.IN_PROGRESS}>In progress</option>
            </select>
          </label>
          <button type="submit">Apply filters</button>
          <button
            type="button"
            onClick={() => {
              setDraft(Object.fromEntries(TEXT_FILTERS.map(([p]) => [p, ""])));
              navigate(location.pathname);
            }}
          >
            Clear
          </button>
        </form>
      )}
      {exporting && <Progress label={`Exporting… ${(exporting.bytes / 1024).toFixed(0)} KiB received`} />}
      <ErrorBanner error={exportError} />
      <ErrorBanner error={events.error} />
      {TEXT_FILTERS.map(([, , field]) => (
        <FieldError key={field} error={events.error} field={`filter.${field.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase())}`} />
      ))}
      {events.isFetching && <Progress label="Loading actions…" />}
      <div className="table-wrap">
        <table className="grid" aria-label="User actions">
          <thead>
            <tr>
              <th>Action</th>
              <th>Date and time</th>
              <th>User</th>
              <th>Token ID</th>
              <th>Modified user</th>
              <th>Project</th>
              <th>Comments</th>
              <th>IP and device</th>
              <th>Result</th>
              <th>Impersonator</th>
            </tr>
          </thead>
          <tbody>
            {rows.map(({ event: e, sequence }) =>
              e ? (
                <tr key={String(sequence)}>
                  <td title={`${e.action} (${CATEGORY[e.category] ?? ""})`}>{catalog.data?.titles.get(e.action) || e.action}</td>
                  <td>{formatDateTime(e.occurredAt)}</td>
                  <td className="mono">{e.actorUserId}</td>
                  <td className="mono">{e.tokenId}</td>
                  <td className="mono">{e.modifiedUserId}</td>
                  <td>{e.project}</td>
                  <td className="comments">{comments(e.comments)}</td>
                  <td>
                    {e.clientIp}
                    {e.userAgent && <div className="muted small">{e.userAgent}</div>}
                  </td>
                  <td>{resultText(e)}</td>
                  <td className="mono">{e.impersonatorUserId}</td>
                </tr>
              ) : null,
            )}
            {!events.isFetching && rows.length === 0 && (
              <tr>
                <td colSpan={10} className="empty">
                  No actions match
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      {events.hasNextPage && (
        <button onClick={() => void events.fetchNextPage()} disabled={events.isFetchingNextPage}>
          More
        </button>
      )}
    </section>
  );
}
