//! Metric names of SPEC §6 and their exposition metadata (type and help text).
//!
//! Agents produce these names; the control plane stores them with a `host` label taken from the
//! agent's certificate and exposes them on `/metrics` with this metadata.

/// Label carrying the agent identity on every fleet series.
pub const HOST_LABEL: &str = "host";

/// Label under which the metric name is indexed, as in Prometheus.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// Goes up and down.
    Gauge,
    /// Only goes up (resets on restart).
    Counter,
    /// Cumulative buckets plus `_sum` and `_count`.
    Histogram,
}

impl MetricKind {
    /// The name used in `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gauge => "gauge",
            Self::Counter => "counter",
            Self::Histogram => "histogram",
        }
    }
}

/// Exposition metadata of one metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricInfo {
    /// Family name (for histograms, without `_bucket`/`_sum`/`_count`).
    pub name: &'static str,
    /// Type.
    pub kind: MetricKind,
    /// Help text.
    pub help: &'static str,
}

macro_rules! metrics {
    ($($const:ident = $name:literal, $kind:ident, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $const: &str = $name;
        )*
        /// Every fleet metric family an agent produces, with its metadata.
        pub const FLEET_METRICS: &[MetricInfo] = &[
            $(MetricInfo { name: $name, kind: MetricKind::$kind, help: $help },)*
        ];
    };
}

metrics! {
    SYSTEM_CPU_USAGE_PERCENT = "aisemble_system_cpu_usage_percent", Gauge, "CPU busy percentage over the last interval, all cores.";
    SYSTEM_MEMORY_USAGE_PERCENT = "aisemble_system_memory_usage_percent", Gauge, "Memory in use as a percentage of total memory.";
    SYSTEM_MEMORY_USED_BYTES = "aisemble_system_memory_used_bytes", Gauge, "Memory in use, in bytes.";
    SYSTEM_MEMORY_TOTAL_BYTES = "aisemble_system_memory_total_bytes", Gauge, "Total memory, in bytes.";
    SYSTEM_SWAP_USED_BYTES = "aisemble_system_swap_used_bytes", Gauge, "Swap in use, in bytes.";
    SYSTEM_DISK_USAGE_PERCENT = "aisemble_system_disk_usage_percent", Gauge, "Used space of a mounted filesystem as a percentage of its size.";
    SYSTEM_DISK_USED_BYTES = "aisemble_system_disk_used_bytes", Gauge, "Used space of a mounted filesystem, in bytes.";
    SYSTEM_DISK_TOTAL_BYTES = "aisemble_system_disk_total_bytes", Gauge, "Size of a mounted filesystem, in bytes.";
    SYSTEM_NETWORK_RECEIVE_BYTES_TOTAL = "aisemble_system_network_receive_bytes_total", Counter, "Bytes received by a network interface.";
    SYSTEM_NETWORK_TRANSMIT_BYTES_TOTAL = "aisemble_system_network_transmit_bytes_total", Counter, "Bytes sent by a network interface.";
    SYSTEM_NETWORK_RECEIVE_PACKETS_TOTAL = "aisemble_system_network_receive_packets_total", Counter, "Packets received by a network interface.";
    SYSTEM_NETWORK_TRANSMIT_PACKETS_TOTAL = "aisemble_system_network_transmit_packets_total", Counter, "Packets sent by a network interface.";
    SYSTEM_NETWORK_RECEIVE_ERRORS_TOTAL = "aisemble_system_network_receive_errors_total", Counter, "Receive errors of a network interface.";
    SYSTEM_NETWORK_TRANSMIT_ERRORS_TOTAL = "aisemble_system_network_transmit_errors_total", Counter, "Transmit errors of a network interface.";
    SYSTEM_LOAD1 = "aisemble_system_load1", Gauge, "1-minute load average.";
    SYSTEM_LOAD5 = "aisemble_system_load5", Gauge, "5-minute load average.";
    SYSTEM_LOAD15 = "aisemble_system_load15", Gauge, "15-minute load average.";
    SYSTEM_UPTIME_SECONDS = "aisemble_system_uptime_seconds", Gauge, "Seconds since the host booted.";
    SYSTEM_PROCESSES = "aisemble_system_processes", Gauge, "Number of processes.";
    SYSTEM_TCP_CONNECTIONS = "aisemble_system_tcp_connections", Gauge, "TCP connections by state (IPv4 and IPv6).";
    REQUESTS_TOTAL = "aisemble_requests_total", Counter, "Requests seen by a monitored service, by status.";
    REQUEST_DURATION_SECONDS = "aisemble_request_duration_seconds", Histogram, "Request latency of a monitored service.";
    ACTIVE_CONNECTIONS = "aisemble_active_connections", Gauge, "Open connections of a monitored service.";
    MODEL_INFERENCE_TOTAL = "aisemble_model_inference_total", Counter, "Model inferences by outcome (success or failure).";
    MODEL_INFERENCE_DURATION_SECONDS = "aisemble_model_inference_duration_seconds", Histogram, "Model inference latency.";
    ERRORS_TOTAL = "aisemble_errors_total", Counter, "Application and HTTP errors of a monitored service, by kind.";
    MODEL_QUEUE_DURATION_SECONDS = "aisemble_model_queue_duration_seconds", Histogram, "Time inference requests waited in a queue.";
    MODEL_TIME_TO_FIRST_TOKEN_SECONDS = "aisemble_model_time_to_first_token_seconds", Histogram, "Time to the first generated token.";
    MODEL_TOKENS_TOTAL = "aisemble_model_tokens_total", Counter, "Tokens processed, by direction (in = prompt, out = generated).";
    MODEL_COST_USD_TOTAL = "aisemble_model_cost_usd_total", Counter, "Estimated inference cost in US dollars.";
    MODEL_REQUEST_INPUT_TOKENS = "aisemble_model_request_input_tokens", Histogram, "Prompt tokens per inference request.";
    MODEL_REQUEST_OUTPUT_TOKENS = "aisemble_model_request_output_tokens", Histogram, "Generated tokens per inference request.";
    MODEL_REQUESTS_RUNNING = "aisemble_model_requests_running", Gauge, "Inference requests being processed.";
    MODEL_QUEUE_DEPTH = "aisemble_model_queue_depth", Gauge, "Inference requests waiting in a queue.";
    CIRCUIT_BREAKER_STATE = "aisemble_circuit_breaker_state", Gauge, "Circuit breaker state of an application: 0 closed, 1 open, 2 half-open.";
    PUSH_EVENTS_TOTAL = "aisemble_agent_push_events_total", Counter, "Events pushed to the agent's local endpoint, by result (accepted or rejected).";
    LOG_LINES_TOTAL = "aisemble_agent_log_lines_total", Counter, "Log lines the agent journaled, by source (file or push).";
    LOG_LINES_TRUNCATED_TOTAL = "aisemble_agent_log_lines_truncated_total", Counter, "Log lines from files cut to the agent's longest line (64 KiB).";
    LOG_LINES_DROPPED_TOTAL = "aisemble_agent_log_lines_dropped_total", Counter, "Log lines the agent did not journal, by reason (paused: pushed while monitoring was paused; journal: the journal refused their batch).";
    SCRAPE_UP = "aisemble_scrape_up", Gauge, "1 when the last scrape of a local endpoint succeeded, else 0.";
    SCRAPE_DURATION_SECONDS = "aisemble_scrape_duration_seconds", Gauge, "Duration of the last scrape of a local endpoint.";
    SCRAPE_SAMPLES = "aisemble_scrape_samples", Gauge, "Samples kept from the last scrape of a local endpoint, after mapping.";
    CHECK_UP = "aisemble_check_up", Gauge, "1 when the health check's last run succeeded, else 0.";
    CHECK_DURATION_SECONDS = "aisemble_check_duration_seconds", Gauge, "Duration of the health check's last run.";
    CHECK_CONSECUTIVE_FAILURES = "aisemble_check_consecutive_failures", Gauge, "Failed runs of the health check since its last success.";
    CHECK_HTTP_STATUS_CODE = "aisemble_check_http_status_code", Gauge, "HTTP status code of the HTTP check's last response.";
    CHECK_REDIS_USED_MEMORY_BYTES = "aisemble_check_redis_used_memory_bytes", Gauge, "Redis used_memory from INFO memory.";
    CHECK_REDIS_MAXMEMORY_BYTES = "aisemble_check_redis_maxmemory_bytes", Gauge, "Redis maxmemory from INFO memory (0 = no limit).";
    CHECK_REDIS_CONNECTED_CLIENTS = "aisemble_check_redis_connected_clients", Gauge, "Redis connected_clients from INFO.";
}

/// Metadata of a fleet family, if the name (or its histogram series name) is known.
pub fn fleet_metric(name: &str) -> Option<&'static MetricInfo> {
    let family = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|base| {
            FLEET_METRICS
                .iter()
                .any(|m| m.name == *base && m.kind == MetricKind::Histogram)
        })
        .unwrap_or(name);
    FLEET_METRICS.iter().find(|m| m.name == family)
}

/// Whether `name` is a valid Prometheus metric name.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid Prometheus label name (and not reserved).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_unique_and_well_formed() {
        for (i, m) in FLEET_METRICS.iter().enumerate() {
            assert!(is_valid_metric_name(m.name), "{}", m.name);
            assert!(
                FLEET_METRICS[i + 1..].iter().all(|o| o.name != m.name),
                "duplicate {}",
                m.name
            );
            assert_eq!(
                m.kind == MetricKind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn histogram_series_map_to_their_family() {
        let family = |n| fleet_metric(n).map(|m| m.name);
        assert_eq!(
            family("aisemble_request_duration_seconds_bucket"),
            Some(REQUEST_DURATION_SECONDS)
        );
        assert_eq!(family("aisemble_system_load1"), Some(SYSTEM_LOAD1));
        assert_eq!(family("aisemble_system_load1_count"), None);
        assert_eq!(family("nope"), None);
    }

    #[test]
    fn names() {
        assert!(is_valid_label_name("mount"));
        assert!(!is_valid_label_name("__name__"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_metric_name("a-b"));
    }
}
