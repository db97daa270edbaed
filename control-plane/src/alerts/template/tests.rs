use super::*;

fn data(value: f64) -> Arc<TemplateData> {
    Arc::new(TemplateData {
        labels: Arc::new(
            [("host", "node-1"), ("mount", "/"), ("instance", "db:5432")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        ),
        external_labels: Arc::new([("cluster".to_owned(), "eu".to_owned())].into()),
        external_url: "http://cp:8080".into(),
        value,
    })
}

#[track_caller]
fn check(text: &str, value: f64, expected: &str) {
    let template = Template::parse("__alert_Test", text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(template.expand(&data(value)), expected, "{text}");
}

#[track_caller]
fn refused(text: &str, needle: &str) {
    let error = Template::parse("__alert_Test", text)
        .expect_err(text)
        .to_string();
    assert!(error.contains(needle), "{text}: {error}");
}

#[test]
fn prometheus_templates_render_as_in_go() {
    check("plain text", 1.0, "plain text");
    check("{{ $labels.host }} at {{ $value }}", 95.5, "node-1 at 95.5");
    check("{{ .Labels.mount }} {{ .Value }}", 1e6, "/ 1e+06");
    check("{{ $labels.missing }}|", 1.0, "|");
    check(
        "{{ $externalLabels.cluster }} {{ $externalURL }}",
        1.0,
        "eu http://cp:8080",
    );
    check("{{ printf \"%.2f\" $value }}%", 81.23456, "81.23%");
    check("{{ $value | printf \"%.1f\" }}", 2.25, "2.2");
    check("{{ $value | humanize }}", 1234567.0, "1.235M");
    check("{{ humanize $value }}", 0.0012, "1.2m");
    check("{{ humanizePercentage $value }}", 0.0512, "5.12%");
    check("{{ humanizeDuration $value }}", 3725.0, "1h 2m 5s");
    check("{{ humanizeDuration $value }}", 0.25, "250ms");
    check("{{ humanize1024 $value }}", 2048.0, "2ki");
    check(
        "{{ humanizeTimestamp $value }}",
        1.5,
        "1970-01-01 00:00:01.5 +0000 UTC",
    );
    check(
        "{{ if gt $value 90.0 }}critical{{ else }}high{{ end }}",
        95.0,
        "critical",
    );
    check(
        "{{ if gt $value 90.0 }}critical{{ else if gt $value 80.0 }}high{{ else }}ok{{ end }}",
        85.0,
        "high",
    );
    check(
        "{{ if eq $labels.host \"node-1\" }}yes{{ end }}",
        1.0,
        "yes",
    );
    check("{{- $labels.host -}}  \n", 1.0, "node-1");
    check("a  {{- \" b \" -}}  c", 1.0, "a b c");
    check("{{/* a comment */}}x", 1.0, "x");
    check("{{ $h := $labels.host }}{{ $h | toUpper }}", 1.0, "NODE-1");
    check(
        "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
        1.0,
        "host=node-1;instance=db:5432;mount=/;",
    );
    check("{{ stripPort $labels.instance }}", 1.0, "db");
    check(
        "{{ reReplaceAll \"(.*)-(\\\\d)\" \"$2/$1\" $labels.host }}",
        1.0,
        "1/node",
    );
    check("{{ if match \"^node\" $labels.host }}m{{ end }}", 1.0, "m");
    check("{{ title \"disk almost full\" }}", 1.0, "Disk Almost Full");
    check("{{ print 1 2 \"a\" \"b\" }}", 1.0, "1 2ab");
    check("{{ len $labels }}", 1.0, "3");
    check("{{ index $labels \"host\" }}", 1.0, "node-1");
    check(
        "{{ and true 0 }} {{ or 0 \"x\" }} {{ not false }}",
        1.0,
        "0 x true",
    );
    check("{{ $value }}", f64::NAN, "NaN");
}

#[test]
fn execution_errors_render_like_prometheus() {
    let out = Template::parse("__alert_Test", "{{ if gt $value 90 }}x{{ end }}")
        .expect("parses")
        .expand(&data(95.0));
    assert!(out.starts_with("<error expanding template:"), "{out}");
    assert!(out.contains("incompatible types for comparison"), "{out}");
    let out = Template::parse("__alert_Test", "{{ humanize \"abc\" }}")
        .expect("parses")
        .expand(&data(1.0));
    assert!(out.contains("invalid syntax"), "{out}");
}

#[test]
fn bad_templates_are_refused_at_parse() {
    refused(
        "{{ nosuchfunc $value }}",
        "function \"nosuchfunc\" not defined",
    );
    refused("{{ $nope }}", "undefined variable \"$nope\"");
    refused("{{ if true }}x", "missing {{end}}");
    refused("{{ end }}", "unexpected {{end}}");
    refused("{{ $value ", "unclosed action");
    refused("{{ query \"up\" }}", "not supported");
    refused("{{ \"abc }}", "unclosed action");
    refused("x {{ with $labels }}{{ end }}", "not supported");
    let error = Template::parse("__alert_T", "ok\n{{ nope }}").expect_err("refused");
    assert_eq!((error.line, error.column), (2, 3), "{error}");
}
