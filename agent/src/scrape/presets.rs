//! The built-in mappings (`preset = "vllm" | "tgi" | "triton"`) as tables; the module doc of
//! [`super`] lists them for the README.

use aisemble_shared::metrics;

pub(crate) use metrics::{MODEL_REQUEST_INPUT_TOKENS, MODEL_REQUEST_OUTPUT_TOKENS};

/// A built-in mapping for an inference server's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// vLLM's `vllm:*` families.
    Vllm,
    /// Hugging Face text-generation-inference's `tgi_*` families.
    Tgi,
    /// NVIDIA Triton Inference Server's `nv_inference_*` families.
    Triton,
}

impl Preset {
    /// The accepted values of `preset`, as written in the config file.
    pub const NAMES: &[&str] = &["vllm", "tgi", "triton", "none"];

    /// Reads a `preset` value: `Ok(None)` for `"none"`, `Err` for an unknown name.
    pub fn parse(name: &str) -> Result<Option<Self>, UnknownPreset> {
        match name {
            "vllm" => Ok(Some(Self::Vllm)),
            "tgi" => Ok(Some(Self::Tgi)),
            "triton" => Ok(Some(Self::Triton)),
            "none" => Ok(None),
            _ => Err(UnknownPreset),
        }
    }

    /// The name as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vllm => "vllm",
            Self::Tgi => "tgi",
            Self::Triton => "triton",
        }
    }

    pub(crate) fn table(self) -> &'static PresetTable {
        match self {
            Self::Vllm => &VLLM,
            Self::Tgi => &TGI,
            Self::Triton => &TRITON,
        }
    }
}

/// A `preset` value that names no preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownPreset;

/// The rules of one preset.
#[derive(Debug)]
pub(crate) struct PresetTable {
    /// Label renames applied by every rule of the preset and to its passed-through families.
    pub(crate) rename_labels: &'static [(&'static str, &'static str)],
    /// The rules; several may name the same family (each produces its own output).
    pub(crate) rules: &'static [PresetRule],
}

/// One rule of a preset (see `mapping::Rule`).
#[derive(Debug)]
pub(crate) struct PresetRule {
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
    pub(crate) drop_labels: &'static [&'static str],
    pub(crate) add_labels: &'static [(&'static str, &'static str)],
    pub(crate) scale: f64,
}

const fn rule(from: &'static str, to: &'static str) -> PresetRule {
    PresetRule {
        from,
        to,
        drop_labels: &[],
        add_labels: &[],
        scale: 1.0,
    }
}

const fn with_labels(
    from: &'static str,
    to: &'static str,
    drop_labels: &'static [&'static str],
    add_labels: &'static [(&'static str, &'static str)],
) -> PresetRule {
    PresetRule {
        from,
        to,
        drop_labels,
        add_labels,
        scale: 1.0,
    }
}

const fn scaled(from: &'static str, to: &'static str, scale: f64) -> PresetRule {
    PresetRule {
        from,
        to,
        drop_labels: &[],
        add_labels: &[],
        scale,
    }
}

const SUCCESS: &[(&str, &str)] = &[("outcome", "success")];
const FAILURE: &[(&str, &str)] = &[("outcome", "failure")];
/// Microseconds to seconds.
const MICROS: f64 = 1e-6;

static VLLM: PresetTable = PresetTable {
    rename_labels: &[("model_name", "model")],
    rules: &[
        rule(
            "vllm:e2e_request_latency_seconds",
            metrics::MODEL_INFERENCE_DURATION_SECONDS,
        ),
        rule(
            "vllm:request_queue_time_seconds",
            metrics::MODEL_QUEUE_DURATION_SECONDS,
        ),
        rule(
            "vllm:time_to_first_token_seconds",
            metrics::MODEL_TIME_TO_FIRST_TOKEN_SECONDS,
        ),
        with_labels(
            "vllm:prompt_tokens_total",
            metrics::MODEL_TOKENS_TOTAL,
            &[],
            &[("direction", "in")],
        ),
        with_labels(
            "vllm:generation_tokens_total",
            metrics::MODEL_TOKENS_TOTAL,
            &[],
            &[("direction", "out")],
        ),
        with_labels(
            "vllm:request_success_total",
            metrics::MODEL_INFERENCE_TOTAL,
            &["finished_reason"],
            SUCCESS,
        ),
        rule("vllm:num_requests_running", metrics::MODEL_REQUESTS_RUNNING),
        rule("vllm:num_requests_waiting", metrics::MODEL_QUEUE_DEPTH),
    ],
};

static TGI: PresetTable = PresetTable {
    rename_labels: &[],
    rules: &[
        rule(
            "tgi_request_duration",
            metrics::MODEL_INFERENCE_DURATION_SECONDS,
        ),
        rule(
            "tgi_request_queue_duration",
            metrics::MODEL_QUEUE_DURATION_SECONDS,
        ),
        with_labels(
            "tgi_request_success",
            metrics::MODEL_INFERENCE_TOTAL,
            &[],
            SUCCESS,
        ),
        with_labels(
            "tgi_request_failure",
            metrics::MODEL_INFERENCE_TOTAL,
            &["err"],
            FAILURE,
        ),
        rule("tgi_request_input_length", MODEL_REQUEST_INPUT_TOKENS),
        rule("tgi_request_generated_tokens", MODEL_REQUEST_OUTPUT_TOKENS),
        rule("tgi_queue_size", metrics::MODEL_QUEUE_DEPTH),
    ],
};

static TRITON: PresetTable = PresetTable {
    rename_labels: &[],
    rules: &[
        with_labels(
            "nv_inference_request_success",
            metrics::MODEL_INFERENCE_TOTAL,
            &[],
            SUCCESS,
        ),
        // Triton adds a request's duration and queue time to its cumulative counters when the
        // request succeeds, so successful requests are the `_count` of both.
        rule("nv_inference_request_success", INFERENCE_DURATION_COUNT),
        rule("nv_inference_request_success", QUEUE_DURATION_COUNT),
        with_labels(
            "nv_inference_request_failure",
            metrics::MODEL_INFERENCE_TOTAL,
            &["reason"],
            FAILURE,
        ),
        scaled(
            "nv_inference_request_duration_us",
            INFERENCE_DURATION_SUM,
            MICROS,
        ),
        scaled("nv_inference_queue_duration_us", QUEUE_DURATION_SUM, MICROS),
        rule(
            "nv_inference_pending_request_count",
            metrics::MODEL_QUEUE_DEPTH,
        ),
    ],
};

/// `_sum`/`_count` series of fleet histograms that Triton fills without buckets (a unit test
/// checks them against `metrics`).
pub(crate) const INFERENCE_DURATION_SUM: &str = "aisemble_model_inference_duration_seconds_sum";
pub(crate) const INFERENCE_DURATION_COUNT: &str = "aisemble_model_inference_duration_seconds_count";
pub(crate) const QUEUE_DURATION_SUM: &str = "aisemble_model_queue_duration_seconds_sum";
pub(crate) const QUEUE_DURATION_COUNT: &str = "aisemble_model_queue_duration_seconds_count";
