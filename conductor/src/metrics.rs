//! The conductor's Prometheus metrics (`GET /metrics`): recorded with the `metrics` crate
//! into this conductor's own recorder (not the process-global one: tests run several
//! conductors in one process) and rendered by `metrics-exporter-prometheus`, which opens
//! no listener of its own. Node counts and database pool use are read when scraped.

use std::time::Duration;

use metrics::{counter, gauge, histogram, with_local_recorder, Counter};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::db::Db;
use crate::drivers::{BoxFut, PowerCall, PowerObserver, PowerOp};
use crate::model::Node;

/// Buckets of the latency histograms (seconds): API requests, BMC calls.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets of step durations (seconds): from instant conductor steps to hour-long erases.
const STEP_BUCKETS: &[f64] = &[
    0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Buckets of image write throughput (bytes per second): 1 MiB/s to 4 GiB/s.
const RATE_BUCKETS: &[f64] = &[
    1048576.0,
    10485760.0,
    52428800.0,
    104857600.0,
    262144000.0,
    524288000.0,
    1073741824.0,
    4294967296.0,
];

type ApiHistograms = std::collections::HashMap<
    String,
    std::collections::HashMap<(&'static str, u16), metrics::Histogram>,
>;

/// One conductor's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    heartbeats: Counter,
    /// API latency histograms by route, then (method, status).
    api: std::sync::RwLock<ApiHistograms>,
    /// The (provision, power) state pairs the node gauge was set for: a pair no node is in
    /// any more is set to 0, not left at its last count.
    seen: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
    /// Off: nothing is recorded and `/metrics` renders only the scrape-time gauges.
    pub enabled: bool,
}

impl Metrics {
    pub fn new(enabled: bool) -> Metrics {
        use metrics_exporter_prometheus::Matcher;
        let builder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("ferrite_step_duration_seconds".into()),
                    STEP_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("ferrite_image_write_rate_bytes_per_second".into()),
                    RATE_BUCKETS,
                )
            });
        // Only empty bucket lists are refused, and ours are constants.
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            Err(e) => {
                tracing::error!(error = %e, "histogram buckets refused; histograms become summaries");
                PrometheusBuilder::new().build_recorder()
            }
        };
        let handle = recorder.handle();
        let heartbeats = with_local_recorder(&recorder, || {
            metrics::describe_counter!(
                "ferrite_heartbeats_total",
                "Agent heartbeats accepted (token checked)."
            );
            counter!("ferrite_heartbeats_total")
        });
        let m = Metrics {
            recorder,
            handle,
            heartbeats,
            seen: Default::default(),
            api: Default::default(),
            enabled,
        };
        m.describe();
        m
    }

    fn describe(&self) {
        with_local_recorder(&self.recorder, || {
            use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
            describe_gauge!("ferrite_nodes", "Nodes by provision state and power state.");
            describe_counter!(
                "ferrite_provision_transitions_total",
                "Provision state transitions, by from, to and event."
            );
            describe_histogram!(
                "ferrite_step_duration_seconds",
                Unit::Seconds,
                "Duration of clean/deploy/service steps, by step, driver and outcome."
            );
            describe_histogram!(
                "ferrite_bmc_call_duration_seconds",
                Unit::Seconds,
                "Latency of power calls to BMCs, by interface and action."
            );
            describe_counter!(
                "ferrite_bmc_call_failures_total",
                "Power calls to BMCs that failed, by interface and action."
            );
            describe_histogram!(
                "ferrite_image_write_rate_bytes_per_second",
                "Image write throughput reported by the agent, per finished write."
            );
            describe_counter!(
                "ferrite_image_bytes_written_total",
                Unit::Bytes,
                "Image bytes the agent reported written, per finished write."
            );
            describe_histogram!(
                "ferrite_api_request_duration_seconds",
                Unit::Seconds,
                "API request latency by method, route and status."
            );
            describe_gauge!(
                "ferrite_db_pool_connections",
                "Database pool connections by state (in_use, idle) and the maximum (max)."
            );
        });
    }

    fn record(&self, f: impl FnOnce()) {
        if self.enabled {
            with_local_recorder(&self.recorder, f);
        }
    }

    /// Moves the histogram samples recorded since the last call into their histograms.
    /// The recorder keeps every sample until then (it is built without the exporter's
    /// upkeep task), so without this a conductor nobody scrapes grows with every request.
    pub fn upkeep(&self) {
        if self.enabled {
            self.handle.run_upkeep();
        }
    }

    /// An accepted heartbeat.
    pub fn heartbeat(&self) {
        if self.enabled {
            self.heartbeats.increment(1);
        }
    }

    pub fn transition(&self, from: &'static str, to: &'static str, event: &'static str) {
        self.record(|| {
            counter!("ferrite_provision_transitions_total",
                     "from" => from, "to" => to, "event" => event)
            .increment(1)
        });
    }

    pub fn step(&self, step: &str, driver: &str, outcome: &'static str, secs: f64) {
        let (step, driver) = (step.to_string(), driver.to_string());
        self.record(|| {
            histogram!("ferrite_step_duration_seconds",
                       "step" => step, "driver" => driver, "outcome" => outcome)
            .record(secs)
        });
    }

    /// A finished image write: the agent's last `rate_bytes_per_s` and `bytes_done`.
    pub fn image_write(&self, driver: &str, rate: f64, bytes: u64) {
        let driver = driver.to_string();
        self.record(|| {
            histogram!("ferrite_image_write_rate_bytes_per_second", "driver" => driver.clone())
                .record(rate);
            counter!("ferrite_image_bytes_written_total", "driver" => driver).increment(bytes);
        });
    }

    /// An API request that matched `route` (the axum pattern, `None` when nothing
    /// matched). The histogram of each (route, method, status) is looked up once and kept:
    /// this runs on every heartbeat.
    pub fn api_request(&self, method: &str, route: Option<&str>, status: u16, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        let route = route.unwrap_or("unmatched");
        let method: &'static str = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
            .into_iter()
            .find(|m| *m == method)
            .unwrap_or("OTHER");
        let secs = elapsed.as_secs_f64();
        {
            let cache = self.api.read().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = cache.get(route).and_then(|m| m.get(&(method, status))) {
                h.record(secs);
                return;
            }
        }
        // `/v1/nodes/{node}` as `/v1/nodes/:node`: braces inside label values are valid
        // Prometheus, but simple parsers (prometheus-parse among them) stop at `}`.
        let label = route.replace('{', ":").replace('}', "");
        let (m, st) = (method.to_string(), status.to_string());
        let h = with_local_recorder(&self.recorder, || {
            histogram!("ferrite_api_request_duration_seconds",
                       "method" => m, "route" => label, "status" => st)
        });
        h.record(secs);
        let mut cache = self.api.write().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(route.to_string())
            .or_default()
            .insert((method, status), h);
    }

    /// The Prometheus text exposition, with node counts and pool use read now.
    pub async fn render(&self, db: &Db) -> Result<String, crate::db::DbError> {
        let counts = db.state_counts().await?;
        let (open, idle, max) = db.pool_use();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut now: std::collections::BTreeMap<(String, String), i64> =
            seen.iter().map(|k| (k.clone(), 0)).collect();
        for (ps, pw, n) in counts {
            now.insert((ps, pw.unwrap_or_else(|| "None".into())), n);
        }
        *seen = now.keys().cloned().collect();
        drop(seen);
        with_local_recorder(&self.recorder, || {
            for ((ps, pw), n) in now {
                gauge!("ferrite_nodes", "provision_state" => ps, "power_state" => pw).set(n as f64);
            }
            let in_use = open.saturating_sub(idle as u32);
            gauge!("ferrite_db_pool_connections", "state" => "in_use").set(f64::from(in_use));
            gauge!("ferrite_db_pool_connections", "state" => "idle").set(idle as f64);
            gauge!("ferrite_db_pool_connections", "state" => "max").set(f64::from(max));
        });
        Ok(self.handle.render())
    }
}

impl PowerObserver for Metrics {
    fn power_call<'a>(&'a self, _node: &'a Node, call: &'a PowerCall<'a>) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let action = match call.op {
                PowerOp::Get => "get".to_string(),
                PowerOp::Set(_) => call.action(),
            };
            let interface = call.interface;
            let failed = call.error.is_some();
            let secs = call.elapsed.as_secs_f64();
            self.record(|| {
                histogram!("ferrite_bmc_call_duration_seconds",
                           "interface" => interface, "action" => action.clone())
                .record(secs);
                if failed {
                    counter!("ferrite_bmc_call_failures_total",
                             "interface" => interface, "action" => action)
                    .increment(1);
                }
            });
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upkeep_keeps_every_sample_in_the_rendered_histogram() {
        let m = Metrics::new(true);
        let route = Some("/v1/heartbeat/{node}");
        for _ in 0..500 {
            m.api_request("POST", route, 202, Duration::from_millis(2));
        }
        m.upkeep();
        for _ in 0..500 {
            m.api_request("POST", route, 202, Duration::from_millis(2));
        }
        m.upkeep();
        let text = m.handle.render();
        let count = text
            .lines()
            .find(|l| l.starts_with("ferrite_api_request_duration_seconds_count"))
            .unwrap_or_else(|| panic!("no request histogram in:\n{text}"));
        assert!(count.ends_with(" 1000"), "{count}");
    }
}
