import { type ReactNode, useEffect, useRef } from "react";
import {
  flexRender,
  getCoreRowModel,
  useReactTable,
  type ColumnDef,
  type RowSelectionState,
  type OnChangeFn,
} from "@tanstack/react-table";
import { explain } from "../api/errors";
import { UserStatus } from "../gen/steward/accounts/v1/accounts_service_pb";

/** An API error as what it means. */
export function ErrorBanner({ error }: { error: unknown }) {
  if (!error) return null;
  const e = explain(error);
  return (
    <div className="error" role="alert" data-testid="error">
      {e.message}
    </div>
  );
}

/** The violation the API reported for one field, next to it. */
export function FieldError({ error, field }: { error: unknown; field: string }) {
  if (!error) return null;
  const text = explain(error).fields[field];
  return text ? <div className="field-error" role="alert">{text}</div> : null;
}

export function Dialog({
  title,
  children,
  onClose,
  wide,
}: {
  title: string;
  children: ReactNode;
  onClose: () => void;
  wide?: boolean;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);
  return (
    <dialog
      ref={ref}
      className={wide ? "dialog wide" : "dialog"}
      aria-label={title}
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
    >
      <h2>{title}</h2>
      {children}
    </dialog>
  );
}

export function Progress({ label, done, total }: { label: string; done?: number; total?: number }) {
  return (
    <div className="progress" role="status" aria-live="polite">
      <span className="spinner" aria-hidden /> {label}
      {total !== undefined && done !== undefined && (
        <>
          {" "}
          <progress value={done} max={total} /> {done} / {total}
        </>
      )}
    </div>
  );
}

// The lock is drawn, not a glyph: emoji fonts are not everywhere.
const LOCK = (
  <svg width="11" height="12" viewBox="0 0 11 12" aria-hidden>
    <rect x="1" y="5" width="9" height="7" rx="1.5" fill="#b54708" />
    <path d="M3 5V3.5a2.5 2.5 0 0 1 5 0V5" stroke="#b54708" strokeWidth="1.5" fill="none" />
  </svg>
);

const STATUS: Record<number, { label: string; cls: string; glyph: ReactNode }> = {
  [UserStatus.ACTIVE]: { label: "Active", cls: "st-active", glyph: "●" },
  [UserStatus.INACTIVE]: { label: "Inactive", cls: "st-inactive", glyph: "●" },
  [UserStatus.SUSPENDED]: { label: "Suspended", cls: "st-suspended", glyph: LOCK },
  [UserStatus.DESTROYED]: { label: "Destroyed", cls: "st-gone", glyph: "●" },
  [UserStatus.DELETED]: { label: "Deleted", cls: "st-gone", glyph: "●" },
};

export function statusLabel(s: UserStatus): string {
  return STATUS[s]?.label ?? "Unknown status";
}

export function StatusIcon({ status }: { status: UserStatus }) {
  const s = STATUS[status] ?? { label: "Unknown status", cls: "", glyph: "?" };
  return (
    <span className={`status ${s.cls}`} title={s.label} aria-label={s.label} data-status={s.label}>
      {s.glyph}
    </span>
  );
}

/** A TanStack table with optional row selection and row clicks. */
export function DataTable<T>({
  data,
  columns,
  getRowId,
  rowSelection,
  onRowSelectionChange,
  onRowClick,
  onRowDoubleClick,
  selectedId,
  empty,
  label,
  footer,
}: {
  data: T[];
  columns: ColumnDef<T, unknown>[];
  getRowId: (row: T, index: number) => string;
  rowSelection?: RowSelectionState;
  onRowSelectionChange?: OnChangeFn<RowSelectionState>;
  onRowClick?: (row: T) => void;
  onRowDoubleClick?: (row: T) => void;
  selectedId?: string;
  empty?: string;
  label: string;
  footer?: ReactNode;
}) {
  const table = useReactTable({
    data,
    columns,
    getRowId,
    getCoreRowModel: getCoreRowModel(),
    enableRowSelection: !!onRowSelectionChange,
    state: rowSelection ? { rowSelection } : {},
    onRowSelectionChange,
  });
  return (
    <div className="table-wrap">
      <table className="grid" aria-label={label}>
        <thead>
          {table.getHeaderGroups().map((hg) => (
            <tr key={hg.id}>
              {hg.headers.map((h) => (
                <th key={h.id} style={{ width: h.getSize() !== 150 ? h.getSize() : undefined }}>
                  {h.isPlaceholder ? null : flexRender(h.column.columnDef.header, h.getContext())}
                </th>
              ))}
            </tr>
          ))}
        </thead>
        <tbody>
          {table.getRowModel().rows.map((row) => (
            <tr
              key={row.id}
              data-row-id={row.id}
              className={row.id === selectedId ? "selected" : undefined}
              onClick={onRowClick ? () => onRowClick(row.original) : undefined}
              onDoubleClick={onRowDoubleClick ? () => onRowDoubleClick(row.original) : undefined}
            >
              {row.getVisibleCells().map((cell) => (
                <td key={cell.id}>{flexRender(cell.column.columnDef.cell, cell.getContext())}</td>
              ))}
            </tr>
          ))}
          {data.length === 0 && (
            <tr>
              <td className="empty" colSpan={columns.length}>
                {empty ?? "Nothing to show"}
              </td>
            </tr>
          )}
        </tbody>
        {footer}
      </table>
    </div>
  );
}

export function NotAvailable({ what }: { what: string }) {
  return (
    <div className="not-available" role="status" data-testid="not-available">
      <b>{what} not available in this release.</b> The service is not served by this gateway;
      the tab works once it is deployed.
    </div>
  );
}

/** Start and end day inputs (local dates, "YYYY-MM-DD"). */
export function DateRange({
  start,
  end,
  onStart,
  onEnd,
}: {
  start: string;
  end: string;
  onStart: (v: string) => void;
  onEnd: (v: string) => void;
}) {
  return (
    <>
      <label>
        Start date <input type="date" value={start} onChange={(e) => onStart(e.target.value)} />
      </label>
      <label>
        End date <input type="date" value={end} onChange={(e) => onEnd(e.target.value)} />
      </label>
    </>
  );
}
