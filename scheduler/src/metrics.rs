//! The scheduler's Prometheus metrics, and the HTTP port that serves them with the
//! `/healthz` and `/readyz` probes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use strata_engine::run::TableReport;
use tokio::net::TcpListener;

use crate::cluster_view::{ClusterView, ExecutorState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LayerLabel {
    layer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabel {
    table: String,
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    layer: String,
    status: String,
}

/// Durations from 0.1 s to about 7 hours.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 3.0, 12))
}

/// Every metric the scheduler exports.
pub(crate) struct Metrics {
    registry: Registry,
    pending_tasks: Gauge,
    running_tasks: Gauge,
    executors: Family<StateLabel, Gauge>,
    slots: Gauge,
    starting: Gauge,
    decisions: Family<DecisionLabel, Counter>,
    backend_errors: Counter,
    runs: Family<StateLabel, Counter>,
    run_seconds: Histogram,
    tables: Family<TableLabel, Counter>,
    table_seconds: Family<LayerLabel, Histogram, fn() -> Histogram>,
    table_rows: Family<LayerLabel, Counter>,
    kafka_lag: Family<TopicLabel, Gauge>,
    kafka_lag_seconds: Family<TopicLabel, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("strata"),
            pending_tasks: Gauge::default(),
            running_tasks: Gauge::default(),
            executors: Family::default(),
            slots: Gauge::default(),
            starting: Gauge::default(),
            decisions: Family::default(),
            backend_errors: Counter::default(),
            runs: Family::default(),
            run_seconds: duration_histogram(),
            tables: Family::default(),
            table_seconds: Family::new_with_constructor(duration_histogram),
            table_rows: Family::default(),
            kafka_lag: Family::default(),
            kafka_lag_seconds: Family::default(),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "pending_tasks",
            "Tasks ready to run that no executor has taken yet",
            metrics.pending_tasks.clone(),
        );
        registry.register(
            "running_tasks",
            "Tasks running on executors",
            metrics.running_tasks.clone(),
        );
        registry.register(
            "executors",
            "Registered executors by state: active, draining (no new tasks) or stopping",
            metrics.executors.clone(),
        );
        registry.register(
            "executor_slots",
            "Task slots of the active executors",
            metrics.slots.clone(),
        );
        registry.register(
            "autoscaler_starting_executors",
            "Executors the autoscaler asked for that have not registered yet",
            metrics.starting.clone(),
        );
        registry.register(
            "autoscaler_decisions",
            "Autoscaler decisions: add, drain, and stop once drained",
            metrics.decisions.clone(),
        );
        registry.register(
            "autoscaler_backend_errors",
            "Decisions the backend could not carry out (retried on the next tick)",
            metrics.backend_errors.clone(),
        );
        registry.register(
            "runs",
            "Pipeline runs finished, by state",
            metrics.runs.clone(),
        );
        registry.register_with_unit(
            "run_duration",
            "Wall time of finished pipeline runs",
            Unit::Seconds,
            metrics.run_seconds.clone(),
        );
        registry.register(
            "tables_built",
            "Tables a run finished, by layer and status",
            metrics.tables.clone(),
        );
        registry.register_with_unit(
            "table_duration",
            "Wall time of building one table",
            Unit::Seconds,
            metrics.table_seconds.clone(),
        );
        registry.register(
            "table_rows_written",
            "Rows written to tables, by layer",
            metrics.table_rows.clone(),
        );
        registry.register(
            "kafka_lag_messages",
            "Messages of a raw table's Kafka topic left after its last build",
            metrics.kafka_lag.clone(),
        );
        registry.register_with_unit(
            "kafka_lag",
            "How long the oldest message a raw table's last build left in its Kafka topic had waited",
            Unit::Seconds,
            metrics.kafka_lag_seconds.clone(),
        );
        metrics
    }
}

impl Metrics {
    /// Records what the cluster looks like now.
    pub(crate) fn observe(&self, view: &ClusterView, starting: usize) {
        self.pending_tasks.set(view.pending_tasks as i64);
        self.running_tasks.set(view.running_tasks as i64);
        for state in [
            ExecutorState::Active,
            ExecutorState::Draining,
            ExecutorState::Stopping,
        ] {
            let count = view.executors.iter().filter(|e| e.state == state).count();
            self.executors
                .get_or_create(&StateLabel {
                    state: state.label(),
                })
                .set(count as i64);
        }
        let slots: usize = view
            .executors
            .iter()
            .filter(|e| e.state == ExecutorState::Active)
            .map(|e| e.slots)
            .sum();
        self.slots.set(slots as i64);
        self.starting.set(starting as i64);
    }

    /// Counts one autoscaler decision: `add`, `drain` or `stop`.
    pub(crate) fn decided(&self, decision: &'static str) {
        self.decisions
            .get_or_create(&DecisionLabel { decision })
            .inc();
    }

    pub(crate) fn backend_failed(&self) {
        self.backend_errors.inc();
    }

    /// Counts a finished run: `succeeded`, `failed` or `cancelled`.
    pub(crate) fn run_finished(&self, state: &'static str, seconds: f64) {
        self.runs.get_or_create(&StateLabel { state }).inc();
        self.run_seconds.observe(seconds);
    }

    pub(crate) fn table_finished(&self, report: &TableReport) {
        let layer = report.layer.clone();
        self.tables
            .get_or_create(&TableLabel {
                layer: layer.clone(),
                status: serde_json::to_value(report.status)
                    .ok()
                    .and_then(|status| status.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            })
            .inc();
        self.table_seconds
            .get_or_create(&LayerLabel {
                layer: layer.clone(),
            })
            .observe(report.duration_ms as f64 / 1000.0);
        self.table_rows
            .get_or_create(&LayerLabel { layer })
            .inc_by(report.rows_written);
        if let Some(topic) = &report.topic {
            let label = TopicLabel {
                table: report.table.clone(),
                topic: topic.topic.clone(),
            };
            self.kafka_lag.get_or_create(&label).set(topic.lag_messages);
            // Unknown when the brokers did not say how old the messages left are.
            if topic.lag_messages == 0 || topic.lag_ms.is_some() {
                let seconds = topic.lag_ms.unwrap_or(0) as f64 / 1000.0;
                self.kafka_lag_seconds.get_or_create(&label).set(seconds);
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the process ends.
pub(crate) async fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = Arc::clone(&metrics);
                async move {
                    (
                        [(
                            CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }));
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use strata_engine::run::{TableStatus, TopicRead};

    use super::*;

    #[test]
    fn a_kafka_raw_table_s_lag_is_a_gauge_of_its_last_build() {
        let metrics = Metrics::default();
        let mut report = TableReport::new("raw.events".into(), "raw".into(), TableStatus::Built);
        for (lag, lag_ms) in [(120, Some(9_000)), (7, Some(2_500)), (3, None)] {
            report.topic = Some(TopicRead {
                topic: "tracking".into(),
                partitions: vec![(0, 0, 10)],
                lag_messages: lag,
                lag_ms,
                behind: Vec::new(),
                messages_lost: 0,
            });
            metrics.table_finished(&report);
        }
        let text = metrics.render();
        let labels = "{table=\"raw.events\",topic=\"tracking\"}";
        assert!(
            text.contains(&format!("strata_kafka_lag_messages{labels} 3")),
            "{text}"
        );
        // The last build whose brokers said how old its lag was.
        assert!(
            text.contains(&format!("strata_kafka_lag_seconds{labels} 2.5")),
            "{text}"
        );
    }
}
