// A small history router: the path picks the view, the query string holds a
// view's state (filters, search, selected user, tab), so a link or a reload
// reopens the same view.
import { useSyncExternalStore } from "react";

function subscribe(cb: () => void): () => void {
  window.addEventListener("popstate", cb);
  window.addEventListener("steward:navigate", cb);
  return () => {
    window.removeEventListener("popstate", cb);
    window.removeEventListener("steward:navigate", cb);
  };
}

const snapshot = () => location.pathname + location.search;

export function useLocation(): { path: string; params: URLSearchParams } {
  const href = useSyncExternalStore(subscribe, snapshot);
  const url = new URL(href, location.origin);
  return { path: url.pathname, params: url.searchParams };
}

export function navigate(href: string, replace = false): void {
  if (href === snapshot()) return;
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  window.dispatchEvent(new Event("steward:navigate"));
}

/** The current URL with some query parameters changed (empty values dropped). */
export function withParams(changes: Record<string, string | undefined>, path = location.pathname): string {
  const p = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined || v === "") p.delete(k);
    else p.set(k, v);
  }
  const q = p.toString();
  return q ? `${path}?${q}` : path;
}
