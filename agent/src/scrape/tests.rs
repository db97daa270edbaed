use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use aisemble_shared::{
    codec::decode_record,
    config::{MappingConfig, ScrapeConfig},
    units::HumanDuration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use super::*;
use crate::journal::{Journal, MemoryJournal};

const VLLM: &str = include_str!("fixtures/vllm.prom");
const TGI: &str = include_str!("fixtures/tgi.prom");
const TRITON: &str = include_str!("fixtures/triton.prom");

const LLAMA: &str = "meta-llama/Llama-3.1-8B-Instruct";

// ---------------------------------------------------------------------------------------------
// Helpers.

fn config(name: &str, url: &str) -> ScrapeConfig {
    ScrapeConfig {
        name: name.into(),
        url: url.into(),
        ..ScrapeConfig::default()
    }
}

fn preset(preset: &str) -> ScrapeConfig {
    ScrapeConfig {
        preset: Some(preset.into()),
        ..config("t", "http://127.0.0.1:1/metrics")
    }
}

fn spec(config: &ScrapeConfig) -> ScrapeSpec {
    ScrapeSpec::from_config(Path::new("agent.toml"), config, Duration::from_secs(15))
        .expect("valid scrape config")
}

fn config_error(config: &ScrapeConfig) -> ConfigError {
    match ScrapeSpec::from_config(Path::new("agent.toml"), config, Duration::from_secs(15)) {
        Ok(spec) => panic!("expected an error, got {spec:?}"),
        Err(error) => error,
    }
}

/// Renders a sample as `name{a="1",b="2"}` (labels sorted).
fn render(sample: &Sample) -> String {
    let mut labels: Vec<String> = sample
        .labels
        .iter()
        .map(|l| format!("{}=\"{}\"", l.name, l.value))
        .collect();
    labels.sort();
    if labels.is_empty() {
        sample.name.clone()
    } else {
        format!("{}{{{}}}", sample.name, labels.join(","))
    }
}

/// Maps `text` with `config`'s mapping; series rendered → value.
fn map(config: &ScrapeConfig, text: &str) -> BTreeMap<String, f64> {
    let mapped = spec(config).mapper.map(&parse::parse(text));
    let out: BTreeMap<String, f64> = mapped
        .samples
        .iter()
        .map(|s| (render(s), s.value))
        .collect();
    assert_eq!(out.len(), mapped.samples.len(), "series are unique");
    out
}

#[track_caller]
fn check(out: &BTreeMap<String, f64>, series: &str, expected: f64) {
    let Some(&got) = out.get(series) else {
        let have: Vec<&String> = out.keys().collect();
        panic!("{series} missing; have {have:#?}");
    };
    assert!(
        (got - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{series}: got {got}, want {expected}"
    );
}

/// The distinct metric names in `out`.
fn names(out: &BTreeMap<String, f64>) -> Vec<&str> {
    let mut names: Vec<&str> = out
        .keys()
        .map(|k| k.split('{').next().unwrap_or(k))
        .collect();
    names.dedup();
    names
}

/// `(le, count)` of one histogram series in bound order; asserts it is cumulative and that
/// `+Inf` equals `_count`.
#[track_caller]
fn buckets(out: &BTreeMap<String, f64>, family: &str, labels: &str) -> Vec<(String, f64)> {
    let prefix = format!("{family}_bucket{{");
    let mut found: Vec<(f64, String, f64)> = out
        .iter()
        .filter_map(|(k, v)| {
            let inner = k.strip_prefix(&prefix)?.strip_suffix('}')?;
            let mut le = None;
            let rest: Vec<&str> = inner
                .split(',')
                .filter(|pair| match pair.strip_prefix("le=") {
                    Some(value) => {
                        le = Some(value.trim_matches('"').to_owned());
                        false
                    }
                    None => true,
                })
                .collect();
            let le = le?;
            (rest.join(",") == labels).then(|| {
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("numeric le")
                };
                (bound, le, *v)
            })
        })
        .collect();
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(!found.is_empty(), "no buckets for {family}{{{labels}}}");
    assert!(
        found.windows(2).all(|w| w[0].2 <= w[1].2),
        "{family} buckets not cumulative: {found:?}"
    );
    let inf = found.last().expect("non-empty");
    assert_eq!(inf.1, "+Inf", "{family} has a +Inf bucket");
    check(out, &format!("{family}_count{{{labels}}}"), inf.2);
    found.into_iter().map(|(_, le, n)| (le, n)).collect()
}

// ---------------------------------------------------------------------------------------------
// Parsing.

fn scalar(family: &str, labels: &[(&str, &str)], value: f64) -> parse::Series {
    parse::Series {
        family: family.into(),
        labels: labels
            .iter()
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
        value: parse::Value::Scalar(value),
    }
}

/// Parses `text` whole, and again fed in every split into two chunks, expecting `expected` each
/// time.
#[track_caller]
fn check_parse(text: &str, expected: &[parse::Series]) {
    assert_eq!(parse::parse(text), expected, "{text:?}");
    for cut in 0..=text.len() {
        let mut lines = LineSplitter::default();
        lines.feed(&text.as_bytes()[..cut]).expect("utf-8");
        lines.feed(&text.as_bytes()[cut..]).expect("utf-8");
        assert_eq!(
            lines.finish().expect("utf-8"),
            expected,
            "{text:?} cut at {cut}"
        );
    }
}

#[test]
fn label_values_are_unescaped() {
    check_parse(
        "x{path=\"C:\\\\dir\",say=\"a \\\"quote\\\"\",lines=\"one\\ntwo\",odd=\"\\d\"} 1\n",
        &[scalar(
            "x",
            &[
                ("lines", "one\ntwo"),
                ("odd", "\\d"),
                ("path", "C:\\dir"),
                ("say", "a \"quote\""),
            ],
            1.0,
        )],
    );
    // `,`, `=`, `}` and `{` inside a value belong to it.
    check_parse(
        "x{q=\"a=1,b={2}\",model=\"m,1\"} 2\n",
        &[scalar("x", &[("model", "m,1"), ("q", "a=1,b={2}")], 2.0)],
    );
    check_parse(
        "x{ a = \"1\" , b=\"2\", } 3\nx{} 4\n",
        &[
            scalar("x", &[("a", "1"), ("b", "2")], 3.0),
            scalar("x", &[], 4.0),
        ],
    );
}

#[test]
fn colon_names_values_and_timestamps() {
    // Timestamps are read past and ignored; leading blanks and `\r\n` line ends are fine.
    check_parse(
        "vllm:num_requests_running 3\n\
         \tvllm:cache{model=\"a:b\"}\t0.5 1700000000000\r\n\
         up 1 -12\n\
         pos +Inf\nneg -inf\nsci 1.5e-3\nlast 7",
        &[
            scalar("vllm:num_requests_running", &[], 3.0),
            scalar("vllm:cache", &[("model", "a:b")], 0.5),
            scalar("up", &[], 1.0),
            scalar("pos", &[], f64::INFINITY),
            scalar("neg", &[], f64::NEG_INFINITY),
            scalar("sci", &[], 0.0015),
            scalar("last", &[], 7.0),
        ],
    );
    let nan = parse::parse("x NaN\n");
    assert!(
        matches!(nan[..], [parse::Series { value: parse::Value::Scalar(v), .. }] if v.is_nan()),
        "{nan:?}"
    );
}

#[test]
fn comments_and_bad_lines_are_skipped() {
    check_parse(
        "# HELP x_total Requests, in \"units\": {a=b}.\n\
         # TYPE x_total counter\n\
         #TYPE\n# some comment\n# EOF\n\n   \n\
         x_total{code=\"200\"} 5\n\
         1bad 1\nbad-name 1\nno_value\nno_value{a=\"b\"}\nnot_a_number abc\n\
         unterminated{a=\"b} 1\nno_equals{a} 1\nrepeated{a=\"1\",a=\"2\"} 1\n\
         glued{a=\"1\"}2\nno_comma{a=\"1\" b=\"2\"} 1\nhex 0x10\n\
         untyped_after 2\n",
        &[
            scalar("x_total", &[("code", "200")], 5.0),
            scalar("untyped_after", &[], 2.0),
        ],
    );
    // Label names are taken as written; the mapping judges them.
    check_parse(
        "x{__meta=\"1\",a.b=\"2\"} 1\n",
        &[scalar("x", &[("__meta", "1"), ("a.b", "2")], 1.0)],
    );
}

#[test]
fn histograms_are_joined_per_label_set() {
    let text = "# HELP vllm:x_seconds Latency, in s: \"a:b\".\n# TYPE vllm:x_seconds histogram\n\
                vllm:x_seconds_bucket{url=\"http://a:1/\",le=\"1.0\"} 2\n\
                vllm:x_seconds_bucket{le=\"+Inf\",url=\"http://a:1/\"} 3\n\
                vllm:x_seconds_sum{url=\"http://a:1/\"} 4.5\n\
                vllm:x_seconds_count{url=\"http://a:1/\"} 3\n\
                vllm:x_seconds_bucket{url=\"b\",le=\"0.5\"} 1\n\
                vllm:x_seconds_bucket{url=\"b\",le=\"nope\"} 1\n\
                vllm:x_seconds_bucket{url=\"b\"} 1\n\
                vllm:x_seconds 9\n\
                vllm:num_requests_running 3\n\
                undeclared_bucket{le=\"1\"} 4\n";
    check_parse(
        text,
        &[
            scalar("vllm:x_seconds", &[], 9.0),
            scalar("vllm:num_requests_running", &[], 3.0),
            scalar("undeclared_bucket", &[("le", "1")], 4.0),
            parse::Series {
                family: "vllm:x_seconds".into(),
                labels: vec![("url".into(), "b".into())],
                value: parse::Value::Histogram {
                    buckets: vec![(0.5, 1.0)],
                    sum: None,
                    count: None,
                },
            },
            parse::Series {
                family: "vllm:x_seconds".into(),
                labels: vec![("url".into(), "http://a:1/".into())],
                value: parse::Value::Histogram {
                    buckets: vec![(1.0, 2.0), (f64::INFINITY, 3.0)],
                    sum: Some(4.5),
                    count: Some(3.0),
                },
            },
        ],
    );
}

#[test]
fn a_declaration_applies_to_the_lines_after_it() {
    check_parse(
        "h_bucket{le=\"1\"} 1\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n\
         # TYPE h gauge\nh_sum 3\n",
        &[
            scalar("h_bucket", &[("le", "1")], 1.0),
            scalar("h_sum", &[], 3.0),
            parse::Series {
                family: "h".into(),
                labels: vec![],
                value: parse::Value::Histogram {
                    buckets: vec![(1.0, 2.0)],
                    sum: None,
                    count: None,
                },
            },
        ],
    );
}

#[test]
fn a_body_is_split_into_lines_across_chunks() {
    let mut lines = LineSplitter::default();
    for chunk in ["a 1\nb{x=\"é", "\"} 2", "\n", "c 3"] {
        lines.feed(chunk.as_bytes()).expect("utf-8");
    }
    assert_eq!(
        lines.finish().expect("utf-8"),
        [
            scalar("a", &[], 1.0),
            scalar("b", &[("x", "é")], 2.0),
            scalar("c", &[], 3.0)
        ]
    );
    // A multi-byte character cut between chunks is still one character.
    let mut lines = LineSplitter::default();
    let text = "b{x=\"é\"} 2\n".as_bytes();
    let cut = text.iter().position(|&b| b >= 0x80).expect("non-ASCII") + 1;
    lines.feed(&text[..cut]).expect("utf-8");
    lines.feed(&text[cut..]).expect("utf-8");
    assert_eq!(
        lines.finish().expect("utf-8"),
        [scalar("b", &[("x", "é")], 2.0)]
    );

    let mut lines = LineSplitter::default();
    assert!(matches!(
        lines.feed(b"ok 1\nbad\xff 1\n"),
        Err(ScrapeError::NotUtf8)
    ));
    let mut lines = LineSplitter::default();
    lines
        .feed(b"ok 1\nbad\xff 1")
        .expect("the line is not complete yet");
    assert!(matches!(lines.finish(), Err(ScrapeError::NotUtf8)));
}

#[test]
fn summaries_and_bare_sum_count_are_grouped() {
    let text = "# TYPE rpc_seconds summary\n\
                rpc_seconds{quantile=\"0.5\"} 0.2\n\
                rpc_seconds{quantile=\"0.99\"} 0.9\n\
                rpc_seconds_sum 12\nrpc_seconds_count 40\n\
                # TYPE gc_seconds summary\ngc_seconds_sum 1.5\ngc_seconds_count 7\n\
                # TYPE other_count gauge\nother_count 5\n";
    let series = parse::parse(text);
    let find = |family: &str| {
        series
            .iter()
            .find(|s| s.family == family)
            .unwrap_or_else(|| panic!("{family} in {series:?}"))
            .value
            .clone()
    };
    assert_eq!(
        find("rpc_seconds"),
        parse::Value::Summary {
            quantiles: vec![(0.5, 0.2), (0.99, 0.9)],
            sum: Some(12.0),
            count: Some(40.0),
        }
    );
    assert_eq!(
        find("gc_seconds"),
        parse::Value::Summary {
            quantiles: vec![],
            sum: Some(1.5),
            count: Some(7.0),
        }
    );
    assert_eq!(find("other_count"), parse::Value::Scalar(5.0));
}

#[test]
fn bounds_are_written_as_prometheus_writes_them() {
    for (value, text) in [
        (0.1, "0.1"),
        (1.0, "1"),
        (2.5, "2.5"),
        (0.0, "0"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (123_456.0, "123456"),
        (1_000_000.0, "1e+06"),
        (1.5e21, "1.5e+21"),
        (-3.0, "-3"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
    ] {
        assert_eq!(mapping::format_float(value), text, "{value}");
    }
    assert_eq!(
        mapping::sanitize("vllm:gpu_cache_usage_perc"),
        "vllm_gpu_cache_usage_perc"
    );
}

// ---------------------------------------------------------------------------------------------
// Presets.

#[test]
fn vllm_preset_maps_the_fixture() {
    let out = map(&preset("vllm"), VLLM);
    assert_eq!(
        names(&out),
        [
            "aisemble_model_inference_duration_seconds_bucket",
            "aisemble_model_inference_duration_seconds_count",
            "aisemble_model_inference_duration_seconds_sum",
            "aisemble_model_inference_total",
            "aisemble_model_queue_depth",
            "aisemble_model_queue_duration_seconds_bucket",
            "aisemble_model_queue_duration_seconds_count",
            "aisemble_model_queue_duration_seconds_sum",
            "aisemble_model_requests_running",
            "aisemble_model_time_to_first_token_seconds_bucket",
            "aisemble_model_time_to_first_token_seconds_count",
            "aisemble_model_time_to_first_token_seconds_sum",
            "aisemble_model_tokens_total",
        ]
    );
    // 16 + 16 + 17 buckets, three _sum/_count pairs, two token series, one success, two gauges.
    assert_eq!(out.len(), 49 + 6 + 2 + 1 + 2);
    let model = format!("model=\"{LLAMA}\"");
    assert!(
        out.keys()
            .all(|k| k.contains(&model) && !k.contains("model_name")),
        "every series has `model`, none `model_name`"
    );

    check(
        &out,
        &format!("aisemble_model_tokens_total{{direction=\"in\",{model}}}"),
        18342.0,
    );
    check(
        &out,
        &format!("aisemble_model_tokens_total{{direction=\"out\",{model}}}"),
        9815.0,
    );
    // stop 41 + length 14 + abort 2, with `finished_reason` dropped.
    check(
        &out,
        &format!("aisemble_model_inference_total{{{model},outcome=\"success\"}}"),
        57.0,
    );
    check(
        &out,
        &format!("aisemble_model_requests_running{{{model}}}"),
        3.0,
    );
    check(&out, &format!("aisemble_model_queue_depth{{{model}}}"), 1.0);

    let e2e = buckets(&out, "aisemble_model_inference_duration_seconds", &model);
    assert_eq!(e2e.len(), 16);
    assert_eq!(e2e[0], ("0.3".into(), 2.0));
    // The server wrote `le="1.0"`; Prometheus writes `1`.
    assert!(e2e.contains(&("1".into(), 12.0)), "{e2e:?}");
    assert!(e2e.contains(&("60".into(), 57.0)), "{e2e:?}");
    check(
        &out,
        &format!("aisemble_model_inference_duration_seconds_sum{{{model}}}"),
        143.27,
    );
    let ttft = buckets(&out, "aisemble_model_time_to_first_token_seconds", &model);
    assert_eq!(ttft.len(), 17);
    assert_eq!(ttft[0], ("0.001".into(), 0.0));
    check(
        &out,
        &format!("aisemble_model_time_to_first_token_seconds_sum{{{model}}}"),
        4.913,
    );
    let queue = buckets(&out, "aisemble_model_queue_duration_seconds", &model);
    assert_eq!(queue[0], ("0.3".into(), 55.0));
    check(
        &out,
        &format!("aisemble_model_queue_duration_seconds_sum{{{model}}}"),
        1.732,
    );
}

#[test]
fn tgi_preset_maps_the_fixture() {
    let mut config = preset("tgi");
    config.labels.insert("model".into(), "mistral-7b".into());
    let out = map(&config, TGI);
    assert_eq!(
        names(&out),
        [
            "aisemble_model_inference_duration_seconds_bucket",
            "aisemble_model_inference_duration_seconds_count",
            "aisemble_model_inference_duration_seconds_sum",
            "aisemble_model_inference_total",
            "aisemble_model_queue_depth",
            "aisemble_model_queue_duration_seconds_bucket",
            "aisemble_model_queue_duration_seconds_count",
            "aisemble_model_queue_duration_seconds_sum",
            "aisemble_model_request_input_tokens_bucket",
            "aisemble_model_request_input_tokens_count",
            "aisemble_model_request_input_tokens_sum",
            "aisemble_model_request_output_tokens_bucket",
            "aisemble_model_request_output_tokens_count",
            "aisemble_model_request_output_tokens_sum",
        ]
    );
    let model = "model=\"mistral-7b\"";
    assert!(out.keys().all(|k| k.contains(model)), "target labels added");
    check(
        &out,
        "aisemble_model_inference_total{model=\"mistral-7b\",outcome=\"success\"}",
        42.0,
    );
    // validation 3 + generation 1, with `err` dropped.
    check(
        &out,
        "aisemble_model_inference_total{model=\"mistral-7b\",outcome=\"failure\"}",
        4.0,
    );
    check(
        &out,
        "aisemble_model_queue_depth{model=\"mistral-7b\"}",
        2.0,
    );
    let duration = buckets(&out, "aisemble_model_inference_duration_seconds", model);
    assert_eq!(
        duration
            .iter()
            .map(|(le, _)| le.as_str())
            .collect::<Vec<_>>(),
        [
            "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "25", "+Inf"
        ]
    );
    check(
        &out,
        "aisemble_model_inference_duration_seconds_sum{model=\"mistral-7b\"}",
        61.734218,
    );
    let queue = buckets(&out, "aisemble_model_queue_duration_seconds", model);
    assert_eq!(queue[0], ("0.0001".into(), 3.0));
    let input = buckets(&out, "aisemble_model_request_input_tokens", model);
    assert_eq!(input[4], ("4096".into(), 42.0));
    check(
        &out,
        "aisemble_model_request_input_tokens_sum{model=\"mistral-7b\"}",
        9731.0,
    );
    buckets(&out, "aisemble_model_request_output_tokens", model);
    check(
        &out,
        "aisemble_model_request_output_tokens_sum{model=\"mistral-7b\"}",
        5520.0,
    );
}

#[test]
fn triton_preset_maps_the_fixture() {
    let out = map(&preset("triton"), TRITON);
    assert_eq!(
        names(&out),
        [
            "aisemble_model_inference_duration_seconds_count",
            "aisemble_model_inference_duration_seconds_sum",
            "aisemble_model_inference_total",
            "aisemble_model_queue_depth",
            "aisemble_model_queue_duration_seconds_count",
            "aisemble_model_queue_duration_seconds_sum",
        ]
    );
    assert_eq!(out.len(), 2 * 7, "seven series per model");
    assert!(!out.keys().any(|k| k.contains("reason")));
    for (m, v, success, failure, duration, queue, pending) in [
        (
            "model=\"resnet50\"",
            "version=\"1\"",
            1200.0,
            7.0,
            30.25,
            1.8,
            5.0,
        ),
        (
            "model=\"bert_onnx\"",
            "version=\"2\"",
            310.0,
            3.0,
            4.7125,
            0.093,
            0.0,
        ),
    ] {
        let model = format!("{m},{v}");
        check(
            &out,
            &format!("aisemble_model_inference_total{{{m},outcome=\"success\",{v}}}"),
            success,
        );
        check(
            &out,
            &format!("aisemble_model_inference_total{{{m},outcome=\"failure\",{v}}}"),
            failure,
        );
        check(
            &out,
            &format!("aisemble_model_inference_duration_seconds_sum{{{model}}}"),
            duration,
        );
        check(
            &out,
            &format!("aisemble_model_inference_duration_seconds_count{{{model}}}"),
            success,
        );
        check(
            &out,
            &format!("aisemble_model_queue_duration_seconds_sum{{{model}}}"),
            queue,
        );
        check(
            &out,
            &format!("aisemble_model_queue_duration_seconds_count{{{model}}}"),
            success,
        );
        check(
            &out,
            &format!("aisemble_model_queue_depth{{{model}}}"),
            pending,
        );
    }
}

#[test]
fn preset_outputs_are_fleet_metrics_or_documented_extras() {
    for preset in [Preset::Vllm, Preset::Tgi, Preset::Triton] {
        for rule in preset.table().rules {
            assert!(is_valid_metric_name(rule.from), "{}", rule.from);
            let known = metrics::fleet_metric(rule.to).is_some()
                || [
                    presets::MODEL_REQUEST_INPUT_TOKENS,
                    presets::MODEL_REQUEST_OUTPUT_TOKENS,
                ]
                .contains(&rule.to);
            assert!(known, "{} → {} is not a known family", rule.from, rule.to);
        }
    }
    assert_eq!(
        metrics::fleet_metric(presets::INFERENCE_DURATION_SUM).map(|m| m.name),
        Some(metrics::MODEL_INFERENCE_DURATION_SECONDS)
    );
    assert_eq!(
        metrics::fleet_metric(presets::QUEUE_DURATION_COUNT).map(|m| m.name),
        Some(metrics::MODEL_QUEUE_DURATION_SECONDS)
    );
}

// ---------------------------------------------------------------------------------------------
// Unmapped families, user rules, labels.

#[test]
fn unmapped_families_are_dropped_by_default_and_prefixed_on_request() {
    let dropped = map(&preset("none"), VLLM);
    assert!(dropped.is_empty(), "{dropped:?}");

    let mut config = preset("vllm");
    config.unmapped = Some("prefix".into());
    let out = map(&config, VLLM);
    let model = format!("model=\"{LLAMA}\"");
    // Mapped families are still mapped, and only mapped.
    check(&out, &format!("aisemble_model_queue_depth{{{model}}}"), 1.0);
    assert!(!out.keys().any(|k| k.contains("num_requests_waiting")));
    // Passed through, colons made `_`, the preset's label rename applied.
    check(
        &out,
        &format!("aisemble_scraped_vllm_gpu_cache_usage_perc{{{model}}}"),
        0.127,
    );
    check(
        &out,
        &format!("aisemble_scraped_vllm_num_requests_swapped{{{model}}}"),
        0.0,
    );
    check(
        &out,
        "aisemble_scraped_python_gc_objects_collected_total{generation=\"1\"}",
        3711.0,
    );
    check(
        &out,
        "aisemble_scraped_process_resident_memory_bytes",
        2.147975168e9,
    );

    // A passed-through histogram and summary keep their shape.
    let mut config = preset("triton");
    config.unmapped = Some("prefix".into());
    config.prefix = Some("triton_".into());
    let out = map(&config, TRITON);
    let labels = "model=\"resnet50\",version=\"1\"";
    check(
        &out,
        "triton_nv_inference_queue_summary_us{model=\"resnet50\",quantile=\"0.99\",version=\"1\"}",
        7400.0,
    );
    check(
        &out,
        &format!("triton_nv_inference_queue_summary_us_sum{{{labels}}}"),
        1.8e6,
    );
    check(
        &out,
        &format!("triton_nv_inference_queue_summary_us_count{{{labels}}}"),
        1200.0,
    );
    check(
        &out,
        &format!("triton_nv_inference_count{{{labels}}}"),
        9600.0,
    );

    let mut config = preset("tgi");
    config.unmapped = Some("prefix".into());
    let out = map(&config, TGI);
    let decode = buckets(
        &out,
        "aisemble_scraped_tgi_batch_inference_duration",
        "method=\"decode\"",
    );
    assert_eq!(decode[0], ("0.01".into(), 5100.0));
    check(&out, "aisemble_scraped_tgi_request_count", 46.0);
}

fn rule(from: &str, to: &str) -> MappingConfig {
    MappingConfig {
        from: from.into(),
        to: to.into(),
        ..MappingConfig::default()
    }
}

#[test]
fn user_rules_win_over_the_preset() {
    let mut config = preset("vllm");
    config.map = vec![
        MappingConfig {
            add_labels: [("source".to_owned(), "vllm".to_owned())].into(),
            ..rule("vllm:num_requests_waiting", "my_waiting_requests")
        },
        // A user rule may name a family the preset leaves out, and keep a label the preset drops.
        MappingConfig {
            rename_labels: [("model_name".to_owned(), "llm".to_owned())].into(),
            ..rule("vllm:request_success_total", "my_success_total")
        },
        rule("vllm:gpu_cache_usage_perc", "my_cache_usage_ratio"),
    ];
    let out = map(&config, VLLM);
    let model = format!("model=\"{LLAMA}\"");
    check(
        &out,
        &format!("my_waiting_requests{{model_name=\"{LLAMA}\",source=\"vllm\"}}"),
        1.0,
    );
    assert!(
        !out.keys()
            .any(|k| k.starts_with("aisemble_model_queue_depth"))
    );
    check(
        &out,
        &format!("my_success_total{{finished_reason=\"length\",llm=\"{LLAMA}\"}}"),
        14.0,
    );
    assert!(
        !out.keys()
            .any(|k| k.starts_with("aisemble_model_inference_total"))
    );
    check(
        &out,
        &format!("my_cache_usage_ratio{{model_name=\"{LLAMA}\"}}"),
        0.127,
    );
    // The preset's other rules still apply.
    check(
        &out,
        &format!("aisemble_model_requests_running{{{model}}}"),
        3.0,
    );
}

#[test]
fn scaling_a_histogram_scales_bounds_and_sum_not_counts() {
    let text = "# TYPE op_duration_us histogram\n\
                op_duration_us_bucket{op=\"a\",le=\"500\"} 1\n\
                op_duration_us_bucket{op=\"a\",le=\"5000\"} 3\n\
                op_duration_us_bucket{op=\"a\",le=\"+Inf\"} 4\n\
                op_duration_us_sum{op=\"a\"} 12500\n\
                op_duration_us_count{op=\"a\"} 4\n\
                # TYPE op_total_us counter\nop_total_us 2500000\n";
    let mut config = preset("none");
    config.map = vec![
        MappingConfig {
            scale: Some(0.000001),
            ..rule("op_duration_us", "op_duration_seconds")
        },
        MappingConfig {
            scale: Some(0.000001),
            ..rule("op_total_us", "op_seconds_total")
        },
    ];
    let out = map(&config, text);
    assert_eq!(
        buckets(&out, "op_duration_seconds", "op=\"a\""),
        [
            ("0.0005".to_owned(), 1.0),
            ("0.005".to_owned(), 3.0),
            ("+Inf".to_owned(), 4.0)
        ]
    );
    check(&out, "op_duration_seconds_sum{op=\"a\"}", 0.0125);
    check(&out, "op_duration_seconds_count{op=\"a\"}", 4.0);
    check(&out, "op_seconds_total", 2.5);
}

#[test]
fn dropping_labels_sums_coinciding_series_bucket_by_bucket() {
    let text = "# TYPE req_seconds histogram\n\
                req_seconds_bucket{code=\"200\",route=\"/a\",le=\"0.1\"} 5\n\
                req_seconds_bucket{code=\"200\",route=\"/a\",le=\"1\"} 8\n\
                req_seconds_bucket{code=\"200\",route=\"/a\",le=\"+Inf\"} 9\n\
                req_seconds_sum{code=\"200\",route=\"/a\"} 3\n\
                req_seconds_count{code=\"200\",route=\"/a\"} 9\n\
                req_seconds_bucket{code=\"500\",route=\"/a\",le=\"0.1\"} 1\n\
                req_seconds_bucket{code=\"500\",route=\"/a\",le=\"1\"} 1\n\
                req_seconds_bucket{code=\"500\",route=\"/a\",le=\"+Inf\"} 2\n\
                req_seconds_sum{code=\"500\",route=\"/a\"} 4\n\
                req_seconds_count{code=\"500\",route=\"/a\"} 2\n\
                req_seconds_bucket{code=\"200\",route=\"/b\",le=\"0.1\"} 7\n\
                req_seconds_bucket{code=\"200\",route=\"/b\",le=\"1\"} 7\n\
                req_seconds_bucket{code=\"200\",route=\"/b\",le=\"+Inf\"} 7\n\
                req_seconds_sum{code=\"200\",route=\"/b\"} 0.5\n\
                req_seconds_count{code=\"200\",route=\"/b\"} 7\n";
    let mut config = preset("none");
    config.map = vec![MappingConfig {
        drop_labels: vec!["code".into()],
        ..rule("req_seconds", "http_seconds")
    }];
    let out = map(&config, text);
    assert_eq!(out.len(), 2 * 5);
    assert_eq!(
        buckets(&out, "http_seconds", "route=\"/a\""),
        [
            ("0.1".to_owned(), 6.0),
            ("1".to_owned(), 9.0),
            ("+Inf".to_owned(), 11.0)
        ]
    );
    check(&out, "http_seconds_sum{route=\"/a\"}", 7.0);
    buckets(&out, "http_seconds", "route=\"/b\"");
}

#[test]
fn invalid_and_reserved_labels_are_handled() {
    let text = "up_ish{__meta=\"x\",host=\"gpu-7\",ok=\"y\"} 1\n";
    let mut config = preset("none");
    config.unmapped = Some("prefix".into());
    config.labels.insert("ok".into(), "from-config".into());
    let mapped = spec(&config).mapper.map(&parse::parse(text));
    assert_eq!(
        mapped.samples.iter().map(render).collect::<Vec<_>>(),
        ["aisemble_scraped_up_ish{exported_host=\"gpu-7\",ok=\"from-config\"}"]
    );
    assert_eq!(
        mapped.invalid_labels.into_iter().collect::<Vec<_>>(),
        ["__meta"]
    );
}

// ---------------------------------------------------------------------------------------------
// Config.

#[test]
fn config_defaults() {
    let spec = spec(&config("vllm", "http://127.0.0.1:8000/metrics"));
    assert_eq!(spec.name, "vllm");
    assert_eq!(spec.interval, Duration::from_secs(15));
    assert_eq!(spec.timeout, DEFAULT_TIMEOUT);
    assert_eq!(spec.preset, None);
    assert_eq!(spec.max_body_bytes, MAX_BODY_BYTES);

    let mut short = config("vllm", "https://localhost:8443/metrics");
    short.interval = Some(HumanDuration(Duration::from_secs(2)));
    short.preset = Some("triton".into());
    let short = self::spec(&short);
    assert_eq!(
        short.timeout,
        Duration::from_secs(2),
        "capped at the interval"
    );
    assert_eq!(short.preset, Some(Preset::Triton));
}

#[test]
fn config_errors_name_the_key() {
    #[track_caller]
    fn check_error(config: ScrapeConfig, key: &str, needle: &str) {
        let error = config_error(&config);
        assert_eq!(error.key.as_deref(), Some(key), "{error}");
        let line = error.to_string();
        assert!(line.contains(needle), "{line:?} lacks {needle:?}");
        assert!(!line.contains('\n'), "one line: {line:?}");
    }
    let base = || config("gpu0", "http://127.0.0.1:8000/metrics");

    check_error(
        ScrapeConfig {
            preset: Some("vLLM".into()),
            ..base()
        },
        "scrape.gpu0.preset",
        "use one of \"vllm\", \"tgi\", \"triton\", \"none\"",
    );
    check_error(
        ScrapeConfig {
            url: "ftp://127.0.0.1/metrics".into(),
            ..base()
        },
        "scrape.gpu0.url",
        "not an http or https URL",
    );
    check_error(
        ScrapeConfig {
            url: "127.0.0.1:8000/metrics".into(),
            ..base()
        },
        "scrape.gpu0.url",
        "http://127.0.0.1:8000/metrics",
    );
    check_error(
        ScrapeConfig {
            interval: Some(HumanDuration::from_secs(5)),
            timeout: Some(HumanDuration::from_secs(10)),
            ..base()
        },
        "scrape.gpu0.timeout",
        "longer than the interval",
    );
    check_error(
        ScrapeConfig {
            interval: Some(HumanDuration::from_secs(0)),
            ..base()
        },
        "scrape.gpu0.interval",
        "is zero",
    );
    check_error(
        ScrapeConfig {
            unmapped: Some("keep".into()),
            ..base()
        },
        "scrape.gpu0.unmapped",
        "\"drop\" or \"prefix\"",
    );
    check_error(
        ScrapeConfig {
            prefix: Some("9lives_".into()),
            ..base()
        },
        "scrape.gpu0.prefix",
        "valid metric name",
    );
    check_error(
        ScrapeConfig {
            labels: [("host".to_owned(), "x".to_owned())].into(),
            ..base()
        },
        "scrape.gpu0.labels",
        "control plane",
    );
    check_error(
        ScrapeConfig {
            labels: [("model-name".to_owned(), "x".to_owned())].into(),
            ..base()
        },
        "scrape.gpu0.labels",
        "not a valid label name",
    );
    check_error(
        ScrapeConfig {
            map: vec![rule("a", "ok_total"), rule("b", "not-valid")],
            ..base()
        },
        "scrape.gpu0.map.to",
        "rule 2 (from \"b\")",
    );
    check_error(
        ScrapeConfig {
            map: vec![rule("", "x")],
            ..base()
        },
        "scrape.gpu0.map.from",
        "not a valid metric family name",
    );
    check_error(
        ScrapeConfig {
            map: vec![MappingConfig {
                add_labels: [("host".to_owned(), "x".to_owned())].into(),
                ..rule("a", "b")
            }],
            ..base()
        },
        "scrape.gpu0.map.add_labels",
        "control plane",
    );
    check_error(
        ScrapeConfig {
            map: vec![MappingConfig {
                rename_labels: [("model_name".to_owned(), "1model".to_owned())].into(),
                ..rule("a", "b")
            }],
            ..base()
        },
        "scrape.gpu0.map.rename_labels",
        "not a valid label name",
    );
    check_error(
        ScrapeConfig {
            map: vec![MappingConfig {
                scale: Some(0.0),
                ..rule("a", "b")
            }],
            ..base()
        },
        "scrape.gpu0.map.scale",
        "positive",
    );
    check_error(config("", "http://x/"), "scrape.name", "is empty");
}

// ---------------------------------------------------------------------------------------------
// The driver's pure parts.

#[test]
fn a_failure_streak_warns_once() {
    let mut streak = Streak::default();
    assert_eq!(streak.succeed(), 0);
    assert!(streak.fail(), "the first failure warns");
    assert!(!streak.fail());
    assert!(!streak.fail());
    assert_eq!(streak.succeed(), 3, "recovery reports the streak");
    assert!(streak.fail(), "a new streak warns again");
}

#[test]
fn own_series_are_labelled_with_the_target() {
    let samples = own_series(
        "gpu0",
        true,
        Duration::from_millis(250),
        vec![Sample::new("a", 1.0), Sample::new("b", 2.0)],
    );
    let out: Vec<(String, f64)> = samples.iter().map(|s| (render(s), s.value)).collect();
    assert_eq!(
        out,
        [
            ("a".to_owned(), 1.0),
            ("b".to_owned(), 2.0),
            ("aisemble_scrape_up{target=\"gpu0\"}".to_owned(), 1.0),
            (
                "aisemble_scrape_duration_seconds{target=\"gpu0\"}".to_owned(),
                0.25
            ),
            ("aisemble_scrape_samples{target=\"gpu0\"}".to_owned(), 2.0),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Real sockets.

/// How the test server answers.
#[derive(Debug, Clone)]
enum Reply {
    /// 200 with this body; `Content-Length` or read-to-close.
    Body { body: Arc<str>, length: bool },
    /// This status, empty body.
    Status(u16),
    /// Reads the request and never answers.
    Hang,
}

/// A raw HTTP/1.1 server on 127.0.0.1; stops when dropped.
#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let reply = reply.clone();
                connections.spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = match reply {
                        Reply::Body { body, length } => {
                            let length = if length {
                                format!("Content-Length: {}\r\n", body.len())
                            } else {
                                String::new()
                            };
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                                 {length}Connection: close\r\n\r\n{body}"
                            )
                        }
                        Reply::Status(code) => format!(
                            "HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        ),
                        Reply::Hang => {
                            std::future::pending::<()>().await;
                            return;
                        }
                    };
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    async fn body(body: &str) -> Self {
        Self::start(Reply::Body {
            body: body.into(),
            length: true,
        })
        .await
    }
}

/// A URL where nothing listens.
async fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/metrics")
}

fn target(name: &str, url: &str, interval_ms: u64, timeout_ms: u64) -> ScrapeConfig {
    ScrapeConfig {
        interval: Some(HumanDuration(Duration::from_millis(interval_ms))),
        timeout: Some(HumanDuration(Duration::from_millis(timeout_ms))),
        ..config(name, url)
    }
}

/// Scrapes running against an in-memory journal.
#[derive(Debug)]
struct Harness {
    journal: Arc<MemoryJournal>,
    monitoring: watch::Sender<MonitoringState>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    fn start(specs: Vec<ScrapeSpec>, state: MonitoringState) -> Self {
        let journal = Arc::new(MemoryJournal::new(256 << 20));
        let (appended, _) = watch::channel(0);
        let sink = RecordSink::new(Arc::clone(&journal) as Arc<dyn Journal>, appended);
        let (monitoring, receiver) = watch::channel(state);
        let shutdown = CancellationToken::new();
        let task = spawn_all(specs, sink, receiver, shutdown.clone());
        Self {
            journal,
            monitoring,
            shutdown,
            task: Some(task),
        }
    }

    /// `(seq, record)` of every journaled record.
    fn records(&self) -> Vec<(u64, MetricRecord)> {
        self.journal
            .read_after(0, usize::MAX, usize::MAX)
            .expect("read")
            .into_iter()
            .map(
                |entry| match decode_record(&entry.record).expect("decodes") {
                    Record::Metrics(record) => (entry.seq, record),
                    other => panic!("unexpected record {other:?}"),
                },
            )
            .collect()
    }

    /// Records of `target` (identified by its `aisemble_scrape_up`).
    fn records_of(&self, target: &str) -> Vec<(u64, MetricRecord)> {
        self.records()
            .into_iter()
            .filter(|(_, record)| own(record, metrics::SCRAPE_UP).0 == target)
            .collect()
    }

    /// Waits (up to 10 s) until `done` holds for the journal.
    async fn until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops promptly on shutdown")
            .expect("does not panic");
    }
}

/// `(target, value)` of the record's own series `name`.
#[track_caller]
fn own(record: &MetricRecord, name: &str) -> (String, f64) {
    let sample = record
        .samples
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} missing from {record:?}"));
    let target = sample
        .labels
        .iter()
        .find(|l| l.name == "target")
        .map(|l| l.value.clone())
        .expect("target label");
    (target, sample.value)
}

fn rendered(record: &MetricRecord) -> BTreeMap<String, f64> {
    record
        .samples
        .iter()
        .map(|s| (render(s), s.value))
        .collect()
}

#[tokio::test]
async fn scrapes_are_mapped_and_journaled_and_failures_report_down() {
    let vllm = Server::body(VLLM).await;
    let hang = Server::start(Reply::Hang).await;
    let error = Server::start(Reply::Status(503)).await;
    let down = closed_url().await;
    let mut vllm_config = target("vllm", &vllm.url(), 100, 100);
    vllm_config.preset = Some("vllm".into());
    let specs = vec![
        spec(&vllm_config),
        spec(&target("hang", &hang.url(), 5_000, 800)),
        spec(&target("error", &error.url(), 100, 100)),
        spec(&target("down", &down, 100, 100)),
    ];
    let harness = Harness::start(specs, MonitoringState::Running);
    harness
        .until("every target's first record", |h| {
            ["vllm", "hang", "error", "down"]
                .iter()
                .all(|t| !h.records_of(t).is_empty())
        })
        .await;

    // Each scrape is one record: the mapped series plus the target's own.
    let (vllm_seq, record) = harness.records_of("vllm").swap_remove(0);
    let out = rendered(&record);
    check(&out, "aisemble_scrape_up{target=\"vllm\"}", 1.0);
    check(&out, "aisemble_scrape_samples{target=\"vllm\"}", 60.0);
    assert_eq!(record.samples.len(), 60 + 3);
    check(
        &out,
        &format!("aisemble_model_tokens_total{{direction=\"in\",model=\"{LLAMA}\"}}"),
        18342.0,
    );
    check(
        &out,
        &format!("aisemble_model_inference_total{{model=\"{LLAMA}\",outcome=\"success\"}}"),
        57.0,
    );
    assert!(own(&record, metrics::SCRAPE_DURATION_SECONDS).1 < 1.0);
    assert!(
        record
            .samples
            .iter()
            .all(|s| s.labels.iter().all(|l| l.name != HOST_LABEL)),
        "no host label"
    );
    let now = crate::status::now_ms();
    assert!((now - 15_000..=now).contains(&record.timestamp_ms));

    for failing in ["error", "down"] {
        let (_, record) = harness.records_of(failing).swap_remove(0);
        assert_eq!(record.samples.len(), 3, "{record:?}");
        assert_eq!(own(&record, metrics::SCRAPE_UP).1, 0.0);
        assert_eq!(own(&record, metrics::SCRAPE_SAMPLES).1, 0.0);
    }

    // The hanging target fails after its timeout, and the others kept their pace meanwhile.
    let (hang_seq, record) = harness.records_of("hang").swap_remove(0);
    assert_eq!(record.samples.len(), 3);
    assert_eq!(own(&record, metrics::SCRAPE_UP).1, 0.0);
    let took = own(&record, metrics::SCRAPE_DURATION_SECONDS).1;
    assert!((0.8..3.0).contains(&took), "hang took {took} s");
    assert!(vllm_seq < hang_seq);
    let vllm_before_hang = harness
        .records_of("vllm")
        .iter()
        .filter(|(seq, _)| *seq < hang_seq)
        .count();
    assert!(
        vllm_before_hang >= 3,
        "vllm scraped {vllm_before_hang} times while hang was pending"
    );

    // The target keeps being scraped on its interval.
    harness
        .until("three vllm records", |h| h.records_of("vllm").len() >= 3)
        .await;
    harness.stop().await;
}

#[tokio::test]
async fn paused_monitoring_scrapes_nothing_until_resumed() {
    let server = Server::body(TGI).await;
    let mut config = target("tgi", &server.url(), 50, 50);
    config.preset = Some("tgi".into());
    let harness = Harness::start(vec![spec(&config)], MonitoringState::Paused);
    // Several intervals pass while paused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(harness.records().is_empty(), "nothing while paused");

    harness.monitoring.send_replace(MonitoringState::Running);
    harness
        .until("a record after resuming", |h| !h.records().is_empty())
        .await;
    let (_, record) = harness.records_of("tgi").swap_remove(0);
    assert_eq!(own(&record, metrics::SCRAPE_UP).1, 1.0);
    harness.stop().await;
}

#[tokio::test]
async fn oversized_bodies_fail_and_large_ones_are_mapped_off_the_runtime() {
    // Over the limit, announced by Content-Length or only found while reading.
    let announced = Server::body(VLLM).await;
    let streamed = Server::start(Reply::Body {
        body: VLLM.into(),
        length: false,
    })
    .await;
    // Larger than the blocking-parse threshold, under the limit.
    let mut big = String::from("# TYPE load gauge\n");
    for i in 0..4000 {
        big.push_str(&format!(
            "load{{worker=\"{i}\",pool=\"default-pool\"}} {i}\n"
        ));
    }
    assert!(big.len() > BLOCKING_MAP_BYTES);
    let large = Server::body(&big).await;

    let mut specs = Vec::new();
    for (name, server) in [("announced", &announced), ("streamed", &streamed)] {
        let mut spec = spec(&target(name, &server.url(), 100, 100));
        spec.max_body_bytes = 1024;
        specs.push(spec);
    }
    let mut config = target("large", &large.url(), 1_000, 1_000);
    config.unmapped = Some("prefix".into());
    specs.push(spec(&config));
    let harness = Harness::start(specs, MonitoringState::Running);
    harness
        .until("a record of each target", |h| {
            ["announced", "streamed", "large"]
                .iter()
                .all(|t| !h.records_of(t).is_empty())
        })
        .await;
    for name in ["announced", "streamed"] {
        let (_, record) = harness.records_of(name).swap_remove(0);
        assert_eq!(own(&record, metrics::SCRAPE_UP).1, 0.0, "{name}");
    }
    let (_, record) = harness.records_of("large").swap_remove(0);
    assert_eq!(own(&record, metrics::SCRAPE_UP).1, 1.0);
    assert_eq!(own(&record, metrics::SCRAPE_SAMPLES).1, 4000.0);
    check(
        &rendered(&record),
        "aisemble_scraped_load{pool=\"default-pool\",worker=\"3999\"}",
        3999.0,
    );
    harness.stop().await;
}
