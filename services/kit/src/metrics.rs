//! Prometheus metrics every component shares, in the text exposition format,
//! served on a separate admin address (`GET /metrics`) by [`serve`].
//!
//! The registry is a handful of statics: every server's calls (count and
//! latency by method and code, recorded by kit's server stack), pool
//! connections and waits, what the outbox relays count and gauge, and the
//! few figures particular to one component (audit's group commits, the
//! mail queue, the quota cache). A series is keyed by its label set,
//! written out in full (`service="accounts",destination="audit"`).
//!
//! A component whose figures belong to one instance (the gateway's, which
//! tests read per instance) keeps its own [`Family`]s and [`Histogram`]s and
//! [`register`]s them, so they are served with the rest.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{Arc, Mutex, Weak},
};

use tokio::{net::TcpListener, sync::watch};

/// A counter or gauge with one value per label set.
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    values: Mutex<BTreeMap<String, f64>>,
}

impl Family {
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: "counter",
            values: Mutex::new(BTreeMap::new()),
        }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: "gauge",
            values: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn add(&self, labels: &str, n: u64) {
        let mut values = self.lock();
        // Counted on every call: no key copy once the series exists.
        match values.get_mut(labels) {
            Some(value) => *value += n as f64,
            None => {
                values.insert(labels.to_owned(), n as f64);
            }
        }
    }

    pub fn inc(&self, labels: &str) {
        self.add(labels, 1);
    }

    pub fn set(&self, labels: &str, value: f64) {
        self.lock().insert(labels.to_owned(), value);
    }

    pub fn get(&self, labels: &str) -> f64 {
        self.lock().get(labels).copied().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, f64>> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends this family in the text exposition format.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in self.lock().iter() {
            if labels.is_empty() {
                let _ = writeln!(out, "{} {value}", self.name);
            } else {
                let _ = writeln!(out, "{}{{{labels}}} {value}", self.name);
            }
        }
    }
}

/// Per label set: the count of each bucket, the sum, the count.
type Buckets = BTreeMap<String, (Vec<u64>, f64, u64)>;

/// A histogram with one set of buckets per label set.
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    buckets: &'static [f64],
    values: Mutex<Buckets>,
}

impl Histogram {
    pub const fn new(name: &'static str, help: &'static str, buckets: &'static [f64]) -> Self {
        Self {
            name,
            help,
            buckets,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn observe(&self, labels: &str, value: f64) {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        if !values.contains_key(labels) {
            values.insert(labels.to_owned(), (vec![0; self.buckets.len()], 0.0, 0));
        }
        let Some((counts, sum, count)) = values.get_mut(labels) else {
            return;
        };
        for (i, le) in self.buckets.iter().enumerate() {
            if value <= *le {
                counts[i] += 1;
            }
        }
        *sum += value;
        *count += 1;
    }

    /// Appends this histogram in the text exposition format.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        for (labels, (counts, sum, count)) in values.iter() {
            let (lead, tail) = if labels.is_empty() {
                (String::new(), String::new())
            } else {
                (format!("{labels},"), format!("{{{labels}}}"))
            };
            for (le, n) in self.buckets.iter().zip(counts) {
                let _ = writeln!(out, "{}_bucket{{{lead}le=\"{le}\"}} {n}", self.name);
            }
            let _ = writeln!(out, "{}_bucket{{{lead}le=\"+Inf\"}} {count}", self.name);
            let _ = writeln!(out, "{}_sum{tail} {sum}", self.name);
            let _ = writeln!(out, "{}_count{tail} {count}", self.name);
        }
    }
}

/// Label set of a call: the component, the method, the gRPC code.
pub fn rpc_labels(component: &str, method: &str, code: &str) -> String {
    format!("component=\"{component}\",method=\"{method}\",code=\"{code}\"")
}

pub static RPC_CALLS: Family = Family::counter(
    "steward_rpc_calls_total",
    "Calls served, by component, method and gRPC code.",
);
pub static RPC_DURATION: Histogram = Histogram::new(
    "steward_rpc_duration_seconds",
    "Time to the response headers, by component, method and gRPC code.",
    &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
    ],
);
pub static POOL_CONNECTIONS: Family = Family::gauge(
    "steward_db_pool_connections",
    "Database connections a service's pool holds.",
);
pub static POOL_IDLE: Family = Family::gauge(
    "steward_db_pool_idle_connections",
    "Idle connections in a service's pool (0 with calls waiting means the pool is too small).",
);
pub static POOL_GETS: Family = Family::counter(
    "steward_db_pool_gets_total",
    "Connections taken from a service's pool.",
);
pub static POOL_WAITS: Family = Family::counter(
    "steward_db_pool_waits_total",
    "Takes from a service's pool that had to wait for a connection.",
);
pub static POOL_WAIT_SECONDS: Family = Family::counter(
    "steward_db_pool_wait_seconds_total",
    "Time spent waiting for a pooled connection.",
);
pub static POOL_TIMEOUTS: Family = Family::counter(
    "steward_db_pool_timeouts_total",
    "Takes from a service's pool that gave up waiting (the call failed UNAVAILABLE).",
);

/// Publishes a pool's gauges and wait counters under `service`.
fn export_pool(service: &str, pool: &crate::db::Pool) {
    let state = pool.state();
    let labels = format!("service=\"{service}\"");
    POOL_CONNECTIONS.set(&labels, f64::from(state.connections));
    POOL_IDLE.set(&labels, f64::from(state.idle_connections));
    let stats = &state.statistics;
    POOL_GETS.set(
        &labels,
        (stats.get_direct + stats.get_waited + stats.get_timed_out) as f64,
    );
    POOL_WAITS.set(&labels, stats.get_waited as f64);
    POOL_WAIT_SECONDS.set(&labels, stats.get_wait_time.as_secs_f64());
    POOL_TIMEOUTS.set(&labels, stats.get_timed_out as f64);
}

/// Label set of a relay: the service whose outbox it drains and where to.
pub fn relay_labels(service: &str, destination: &str) -> String {
    format!("service=\"{service}\",destination=\"{destination}\"")
}

pub static OUTBOX_DELIVERED: Family = Family::counter(
    "steward_outbox_delivered_total",
    "Outbox rows delivered to their destination.",
);
pub static OUTBOX_FAILURES: Family = Family::counter(
    "steward_outbox_delivery_failures_total",
    "Failed delivery attempts (retried with capped backoff).",
);
pub static OUTBOX_PARKED: Family = Family::counter(
    "steward_outbox_parked_total",
    "Outbox rows refused by their destination and parked for an operator.",
);
pub static OUTBOX_BACKLOG: Family = Family::gauge(
    "steward_outbox_backlog",
    "Outbox rows waiting for delivery (not parked).",
);
pub static OUTBOX_PARKED_ROWS: Family =
    Family::gauge("steward_outbox_parked_rows", "Outbox rows parked now.");
pub static OUTBOX_OLDEST_AGE: Family = Family::gauge(
    "steward_outbox_oldest_pending_age_seconds",
    "Age of the oldest undelivered, unparked outbox row.",
);

/// Runs [`export_pool`] every few seconds until `shutdown`: each service
/// spawns one for its pool.
pub async fn export_pool_until(
    service: &'static str,
    pool: crate::db::Pool,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        export_pool(service, &pool);
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

pub static AUDIT_GROUP_COMMIT_EVENTS: Histogram = Histogram::new(
    "steward_audit_group_commit_events",
    "Events appended to the chain per ingest transaction (concurrent calls share one).",
    &[
        1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    ],
);
pub static AUDIT_GROUP_COMMIT_CALLS: Histogram = Histogram::new(
    "steward_audit_group_commit_calls",
    "Ingest calls answered by one transaction.",
    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
);
pub static MAIL_QUEUE: Family = Family::gauge(
    "steward_notifications_mail_queue",
    "Mail not yet at a final status, by status (QUEUED, SENDING, DEFERRED).",
);
pub static MAIL_OLDEST_QUEUED_AGE: Family = Family::gauge(
    "steward_notifications_oldest_queued_age_seconds",
    "Age of the oldest mail not yet at a final status.",
);
pub static QUOTAS_CACHE_USERS: Family = Family::gauge(
    "steward_quotas_cache_users",
    "Users whose group and overrides a quotas replica holds in memory, by replica id.",
);

/// Every family, in exposition order.
static FAMILIES: [&Family; 16] = [
    &RPC_CALLS,
    &POOL_CONNECTIONS,
    &POOL_IDLE,
    &POOL_GETS,
    &POOL_WAITS,
    &POOL_WAIT_SECONDS,
    &POOL_TIMEOUTS,
    &OUTBOX_DELIVERED,
    &OUTBOX_FAILURES,
    &OUTBOX_PARKED,
    &OUTBOX_BACKLOG,
    &OUTBOX_PARKED_ROWS,
    &OUTBOX_OLDEST_AGE,
    &MAIL_QUEUE,
    &MAIL_OLDEST_QUEUED_AGE,
    &QUOTAS_CACHE_USERS,
];

static HISTOGRAMS: [&Histogram; 3] = [
    &RPC_DURATION,
    &AUDIT_GROUP_COMMIT_EVENTS,
    &AUDIT_GROUP_COMMIT_CALLS,
];

/// Figures a component keeps per instance, served with the statics.
pub trait Collect: Send + Sync {
    fn collect(&self, out: &mut String);
}

static COLLECTORS: Mutex<Vec<Weak<dyn Collect>>> = Mutex::new(Vec::new());

/// Serves `collector`'s figures with every family until it is dropped.
pub fn register(collector: &Arc<dyn Collect>) {
    let mut all = COLLECTORS.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|c| c.strong_count() > 0);
    all.push(Arc::downgrade(collector));
}

/// The exposition text of every family and registered collector.
pub fn render() -> String {
    let mut out = String::new();
    for family in FAMILIES {
        family.render(&mut out);
    }
    for histogram in HISTOGRAMS {
        histogram.render(&mut out);
    }
    let live: Vec<Arc<dyn Collect>> = COLLECTORS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for collector in live {
        collector.collect(&mut out);
    }
    out
}

/// Serves `GET /metrics` (and nothing else) until `shutdown` turns true.
pub async fn serve(listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    use http_body_util::Full;
    use hyper::{Response, StatusCode, body::Bytes, service::service_fn};

    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "metrics listener accept failed");
                    continue;
                }
            },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        tokio::spawn(async move {
            let service = service_fn(
                |request: hyper::Request<hyper::body::Incoming>| async move {
                    if request.uri().path() == "/metrics" {
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(render())))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"not found\n")))
                    }
                },
            );
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%error, "metrics connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_into_every_bucket_above() {
        static H: Histogram = Histogram::new("t_seconds", "A test histogram.", &[0.01, 0.1, 1.0]);
        H.observe("m=\"a\"", 0.05);
        H.observe("m=\"a\"", 2.0);
        let mut out = String::new();
        H.render(&mut out);
        assert!(out.contains("t_seconds_bucket{m=\"a\",le=\"0.01\"} 0"));
        assert!(out.contains("t_seconds_bucket{m=\"a\",le=\"0.1\"} 1"));
        assert!(out.contains("t_seconds_bucket{m=\"a\",le=\"+Inf\"} 2"));
        assert!(out.contains("t_seconds_count{m=\"a\"} 2"));

        static U: Histogram = Histogram::new("u_events", "Unlabelled.", &[1.0, 10.0]);
        U.observe("", 5.0);
        let mut out = String::new();
        U.render(&mut out);
        assert!(out.contains("u_events_bucket{le=\"1\"} 0\n"));
        assert!(out.contains("u_events_bucket{le=\"10\"} 1\n"));
        assert!(out.contains("u_events_count 1\n"));
    }

    #[test]
    fn renders_families_with_labels() {
        static F: Family = Family::counter("t_total", "A test counter.");
        F.add(&relay_labels("accounts", "audit"), 3);
        let mut out = String::new();
        F.render(&mut out);
        assert!(out.contains("# TYPE t_total counter"));
        assert!(out.contains("t_total{service=\"accounts\",destination=\"audit\"} 3"));
    }
}
