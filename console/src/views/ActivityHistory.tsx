import { useState } from "react";
import { useInfiniteQuery } from "@tanstack/react-query";
import { audit } from "../api/client";
import { ActivityOrder } from "../gen/steward/audit/v1/audit_service_pb";
import { DateRange, ErrorBanner, Progress } from "../components/ui";
import { navigate, useLocation, withParams } from "../lib/router";
import { defaultRange } from "./UserTabs";

export function ActivityHistory() {
  const { params } = useLocation();
  const [d0, d1] = defaultRange(30);
  const appliedStart = params.get("start") ?? d0;
  const appliedEnd = params.get("end") ?? d1;
  const order = params.get("order") === "actions" ? ActivityOrder.ACTIONS_DESC : ActivityOrder.USER_ID;
  const [start, setStart] = useState(appliedStart);
  const [end, setEnd] = useState(appliedEnd);
  const list = useInfiniteQuery({
    queryKey: ["activity", appliedStart, appliedEnd, order],
    initialPageParam: "",
    queryFn: async ({ pageParam }) =>
      audit.getActivityHistory({ startDate: appliedStart, endDate: appliedEnd, orderBy: order, page: { pageSize: 100, pageToken: pageParam } }),
    getNextPageParam: (last) => last.page?.nextPageToken || undefined,
  });
  const rows = list.data?.pages.flatMap((p) => p.activities) ?? [];
  return (
    <section className="list">
      <div className="toolbar">
        <DateRange start={start} end={end} onStart={setStart} onEnd={setEnd} />
        <label>
          Order
          <select
            value={order === ActivityOrder.ACTIONS_DESC ? "actions" : ""}
            onChange={(e) => navigate(withParams({ order: e.target.value }))}
          >
            <option value="">By user ID</option>
            <option value="actions">Most active first</option>
          </select>
        </label>
        <button
          onClick={() => {
            navigate(withParams({ start, end }));
            void list.refetch();
          }}
        >
          Refresh
        </button>
      </div>
      <ErrorBanner error={list.error} />
      {list.isFetching && <Progress label="Counting actions…" />}
      <table className="grid" aria-label="Activity history">
        <thead>
          <tr>
            <th>User ID</th>
            <th>Actions count</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((a) => (
            <tr key={a.userId}>
              <td>
                <a
                  className="mono"
                  href={`/users?user=${a.userId}`}
                  onClick={(e) => {
                    e.preventDefault();
                    navigate(`/users?q=${encodeURIComponent(a.userId)}&user=${encodeURIComponent(a.userId)}`);
                  }}
                >
                  {a.userId}
                </a>
              </td>
              <td className="num">{String(a.actionsCount)}</td>
            </tr>
          ))}
          {!list.isFetching && rows.length === 0 && (
            <tr>
              <td colSpan={2} className="empty">
                No activity in this period
              </td>
            </tr>
          )}
        </tbody>
      </table>
      {list.hasNextPage && <button onClick={() => void list.fetchNextPage()}>More</button>}
    </section>
  );
}
