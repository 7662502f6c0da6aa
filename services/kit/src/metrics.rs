//! Prometheus metrics every component shares, in the text exposition format,
//! served on a separate admin address (`GET /metrics`) by [`serve`].
//!
//! The registry is a handful of statics: what the outbox relays count and
//! gauge. A series is keyed by its label set, written out in full
//! (`service="accounts",destination="audit"`).

use std::{collections::BTreeMap, fmt::Write as _, sync::Mutex};

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
        *self.lock().entry(labels.to_owned()).or_default() += n as f64;
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

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in self.lock().iter() {
            let _ = writeln!(out, "{}{{{labels}}} {value}", self.name);
        }
    }
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

/// Every family, in exposition order.
static FAMILIES: [&Family; 6] = [
    &OUTBOX_DELIVERED,
    &OUTBOX_FAILURES,
    &OUTBOX_PARKED,
    &OUTBOX_BACKLOG,
    &OUTBOX_PARKED_ROWS,
    &OUTBOX_OLDEST_AGE,
];

/// The exposition text of every family.
pub fn render() -> String {
    let mut out = String::new();
    for family in FAMILIES {
        family.render(&mut out);
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
    fn renders_families_with_labels() {
        static F: Family = Family::counter("t_total", "A test counter.");
        F.add(&relay_labels("accounts", "audit"), 3);
        let mut out = String::new();
        F.render(&mut out);
        assert!(out.contains("# TYPE t_total counter"));
        assert!(out.contains("t_total{service=\"accounts\",destination=\"audit\"} 3"));
    }
}
