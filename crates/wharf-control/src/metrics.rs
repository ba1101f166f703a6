//! Prometheus metrics of the control plane, in a registry of its own (so that embedding Wharf
//! in another process never collides with that process's metrics).

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    logins: IntCounterVec,
    bans: IntCounterVec,
    users: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "wharf_http_requests_total",
                "HTTP requests answered by the control plane.",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "wharf_http_request_duration_seconds",
                "Time to answer an HTTP request.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route"],
        )
        .expect("valid metric");
        let logins = IntCounterVec::new(
            Opts::new(
                "wharf_logins_total",
                "Gateway login checks, by protocol and result (success, denied, banned, error, …).",
            ),
            &["protocol", "result"],
        )
        .expect("valid metric");
        let bans = IntCounterVec::new(
            Opts::new(
                "wharf_bans_total",
                "Bans imposed by the defender after failed logins, by kind (address, user).",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let users = IntGauge::new("wharf_users", "Users in the database.").expect("valid metric");
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(logins.clone()),
            Box::new(bans.clone()),
            Box::new(users.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            http_requests,
            http_duration,
            logins,
            bans,
            users,
        }
    }

    /// `route` is the matched route template (`/v1/users/{username}`), never the raw path, so
    /// the number of series stays bounded.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_login(&self, protocol: &str, result: &str) {
        self.logins.with_label_values(&[protocol, result]).inc();
    }

    pub fn observe_ban(&self, kind: &str) {
        self.bans.with_label_values(&[kind]).inc();
    }

    pub fn set_users(&self, count: i64) {
        self.users.set(count);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of valid metrics");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
