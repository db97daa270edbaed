//! The control plane's own metrics (SPEC §6), in one registry per instance so that several control
//! planes in one process (tests) never share counters. Rendered on `/metrics` together with the
//! fleet series (see `api::exposition`).

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

/// Reasons counted in `aisemble_ingest_rejected_total`.
pub mod reject {
    /// The peer presented no client certificate.
    pub const NO_CLIENT_CERTIFICATE: &str = "no_client_certificate";
    /// The certificate was not issued by our CA.
    pub const UNKNOWN_CA: &str = "unknown_ca";
    /// The certificate has expired (or is not yet valid).
    pub const EXPIRED: &str = "expired";
    /// The certificate is revoked.
    pub const REVOKED: &str = "revoked";
    /// Any other certificate problem.
    pub const BAD_CERTIFICATE: &str = "bad_certificate";
    /// The peer does not speak our ALPN.
    pub const ALPN: &str = "alpn_mismatch";
    /// The handshake failed or timed out for another reason.
    pub const HANDSHAKE: &str = "handshake_failed";
    /// A frame could not be decoded, or a stream ended inside a frame.
    pub const BAD_FRAME: &str = "bad_frame";
    /// A frame's length prefix exceeds the maximum.
    pub const FRAME_TOO_LARGE: &str = "frame_too_large";
    /// Unsupported protocol version.
    pub const VERSION: &str = "incompatible_version";
    /// A message out of order.
    pub const PROTOCOL: &str = "protocol_violation";
    /// No Hello in time.
    pub const TIMEOUT: &str = "timeout";
    /// A sample with an invalid name or too many labels.
    pub const BAD_SAMPLE: &str = "bad_sample";
    /// A sample older than its series' latest.
    pub const OUT_OF_ORDER: &str = "out_of_order_sample";
    /// A sample identical to its series' latest (stored before).
    pub const DUPLICATE: &str = "duplicate_sample";
}

/// Every metric the control plane keeps about itself.
#[derive(Debug, Clone)]
pub struct Telemetry {
    registry: Registry,
    /// Connected agents (set when rendering).
    pub agents_connected: IntGauge,
    /// Samples stored.
    pub ingest_samples: IntCounter,
    /// Batches stored.
    pub ingest_batches: IntCounter,
    /// Rejections by reason.
    pub ingest_rejected: IntCounterVec,
    /// Time from a batch's arrival to its acknowledgement.
    pub ingest_commit_seconds: Histogram,
    /// HTTP requests by method, route and status.
    pub http_requests: IntCounterVec,
    /// HTTP request durations by route.
    pub http_duration_seconds: HistogramVec,
    /// Series in the store (set when rendering).
    pub store_series: IntGauge,
    /// Bytes the store occupies on disk (set when rendering).
    pub store_disk_bytes: IntGauge,
    /// Enrollment attempts by result (`issued`, `refused`, `busy`).
    pub enrollments: IntCounterVec,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// The registry, for metrics other modules own (notifiers).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let agents_connected =
            IntGauge::new("aisemble_agents_connected", "Agents with a live session.")
                .unwrap_or_else(unreachable);
        let ingest_samples =
            IntCounter::new("aisemble_ingest_samples_total", "Samples durably stored.")
                .unwrap_or_else(unreachable);
        let ingest_batches = IntCounter::new(
            "aisemble_ingest_batches_total",
            "Agent batches durably stored.",
        )
        .unwrap_or_else(unreachable);
        let ingest_rejected = IntCounterVec::new(
            Opts::new(
                "aisemble_ingest_rejected_total",
                "Connections, frames and samples refused, by reason.",
            ),
            &["reason"],
        )
        .unwrap_or_else(unreachable);
        let ingest_commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "aisemble_ingest_commit_duration_seconds",
                "Time from a batch's arrival to its acknowledgement (decode, WAL write, flush).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .unwrap_or_else(unreachable);
        let http_requests = IntCounterVec::new(
            Opts::new(
                "aisemble_http_requests_total",
                "HTTP requests served, by method, route and status.",
            ),
            &["method", "route", "status"],
        )
        .unwrap_or_else(unreachable);
        let http_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "aisemble_http_request_duration_seconds",
                "HTTP request latency, by route.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route"],
        )
        .unwrap_or_else(unreachable);
        let store_series = IntGauge::new("aisemble_store_series", "Series in the store.")
            .unwrap_or_else(unreachable);
        let store_disk_bytes = IntGauge::new(
            "aisemble_store_disk_bytes",
            "Bytes the store occupies on disk.",
        )
        .unwrap_or_else(unreachable);
        let enrollments = IntCounterVec::new(
            Opts::new(
                "aisemble_enrollments_total",
                "Agent enrollments (aisemble-agent enroll), by result: issued, refused, or busy (over the connection limits).",
            ),
            &["result"],
        )
        .unwrap_or_else(unreachable);
        for result in ["issued", "refused"] {
            enrollments.with_label_values(&[result]);
        }
        for reason in [
            reject::NO_CLIENT_CERTIFICATE,
            reject::UNKNOWN_CA,
            reject::EXPIRED,
            reject::REVOKED,
            reject::BAD_FRAME,
            reject::FRAME_TOO_LARGE,
            reject::VERSION,
            reject::OUT_OF_ORDER,
            reject::DUPLICATE,
        ] {
            // Pre-create the common reasons so dashboards and alerts see zeros, not absent series.
            ingest_rejected.with_label_values(&[reason]);
        }
        let collectors: [Box<dyn prometheus::core::Collector>; 10] = [
            Box::new(agents_connected.clone()),
            Box::new(ingest_samples.clone()),
            Box::new(ingest_batches.clone()),
            Box::new(ingest_rejected.clone()),
            Box::new(ingest_commit_seconds.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration_seconds.clone()),
            Box::new(store_series.clone()),
            Box::new(store_disk_bytes.clone()),
            Box::new(enrollments.clone()),
        ];
        for collector in collectors {
            registry.register(collector).unwrap_or_else(unreachable);
        }
        Self {
            registry,
            agents_connected,
            ingest_samples,
            ingest_batches,
            ingest_rejected,
            ingest_commit_seconds,
            http_requests,
            http_duration_seconds,
            store_series,
            store_disk_bytes,
            enrollments,
        }
    }

    /// Counts a rejection.
    pub fn reject(&self, reason: &str) {
        self.ingest_rejected.with_label_values(&[reason]).inc();
    }

    /// The current count for a rejection reason.
    pub fn rejected(&self, reason: &str) -> u64 {
        self.ingest_rejected.with_label_values(&[reason]).get()
    }

    /// Text exposition of every own metric.
    pub fn render(&self, out: &mut Vec<u8>) {
        // Encoding into a Vec cannot fail for well-formed families, which ours are.
        let _ = TextEncoder::new().encode(&self.registry.gather(), out);
    }
}

/// Metric definitions above are constants known to be valid; a failure is a programming error
/// caught by the first test that builds a `Telemetry`.
fn unreachable<T>(error: prometheus::Error) -> T {
    panic!("invalid built-in metric definition: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let telemetry = Telemetry::new();
        telemetry.reject(reject::REVOKED);
        let mut out = Vec::new();
        telemetry.render(&mut out);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("aisemble_ingest_rejected_total{reason=\"revoked\"} 1"));
        assert!(text.contains("# TYPE aisemble_agents_connected gauge"));
        assert_eq!(telemetry.rejected(reject::REVOKED), 1);
    }
}
