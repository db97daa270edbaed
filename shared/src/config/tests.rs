use std::path::Path;

use super::*;

const REFERENCE: &str = "agent.example.toml";

#[track_caller]
fn check_error(text: &str, expected: &str) {
    let error = parse_toml::<AgentConfigFile>(Path::new("agent.toml"), text, REFERENCE)
        .expect_err("must fail");
    let line = error.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(
        line.starts_with(expected),
        "{line}\n  does not start with\n{expected}"
    );
}

#[test]
fn minimal_file_takes_defaults() {
    let config: AgentConfigFile = parse_toml(
        Path::new("a.toml"),
        "[control_plane]\naddress = \"cp:7443\"\n",
        REFERENCE,
    )
    .expect("parses");
    assert_eq!(config.control_plane.address, "cp:7443");
    assert_eq!(config.collect.interval, HumanDuration::from_secs(10));
    assert_eq!(config.buffer.max_bytes, ByteSize(512 << 20));
    assert_eq!(config.agent.data_dir, PathBuf::from("/var/lib/aisemble"));
    assert_eq!(config.collect.collectors, CollectorKind::all());
}

#[test]
fn unknown_key_names_file_line_key_and_fix() {
    check_error(
        "[control_plane]\naddress = \"cp:7443\"\n\n[collect]\nintervall = \"5s\"\n",
        "agent.toml:5:1: key `collect.intervall`: unknown field `intervall`, expected",
    );
    let error = parse_toml::<AgentConfigFile>(
        Path::new("agent.toml"),
        "[collect]\nintervall = \"5s\"\n[control_plane]\naddress=\"x:1\"",
        REFERENCE,
    )
    .expect_err("fails");
    assert!(
        error.to_string().ends_with(
            "remove it or fix its spelling; every key is documented in agent.example.toml"
        )
    );
}

#[test]
fn wrong_type_names_the_key() {
    check_error(
        "[control_plane]\naddress = \"cp:7443\"\n[collect]\ninterval = 10\n",
        "agent.toml:4:12: key `collect.interval`: invalid type: integer `10`, expected a duration string",
    );
    check_error(
        "[control_plane]\naddress = \"cp:7443\"\n[buffer]\nmax_bytes = \"lots\"\n",
        "agent.toml:4:13: key `buffer.max_bytes`: invalid size \"lots\"",
    );
}

#[test]
fn missing_required_key_is_named() {
    check_error(
        "[control_plane]\nserver_name = \"cp\"\n",
        "agent.toml:1:1: key `control_plane.address`: missing field `address`",
    );
}

#[test]
fn syntax_error_has_a_position() {
    check_error("[control_plane\naddress = 1", "agent.toml:1:");
}

#[test]
fn toml_strings_roundtrip() {
    for value in [
        "plain",
        "with \"quotes\"",
        "back\\slash",
        "tab\tnew\nline",
        "\u{1}",
    ] {
        let text = format!("[control_plane]\naddress = {}\n", toml_string(value));
        let config: AgentConfigFile =
            parse_toml(Path::new("a.toml"), &text, REFERENCE).expect("parses");
        assert_eq!(config.control_plane.address, value);
    }
}

#[test]
fn logs_entries_take_defaults_and_refuse_unknown_values() {
    let config: AgentConfigFile = parse_toml(
        Path::new("a.toml"),
        "[control_plane]\naddress = \"cp:7443\"\n\n[[logs]]\npath = \"/var/log/api.log\"\nservice = \"api\"\n\n[[logs]]\npath = \"w.log\"\nservice = \"worker\"\nformat = \"json\"\nstart_at = \"beginning\"\n",
        REFERENCE,
    )
    .expect("parses");
    assert_eq!(
        config.logs,
        [
            LogFileConfig {
                path: "/var/log/api.log".into(),
                service: "api".into(),
                format: LogFormat::Plain,
                start_at: StartAt::End,
            },
            LogFileConfig {
                path: "w.log".into(),
                service: "worker".into(),
                format: LogFormat::Json,
                start_at: StartAt::Beginning,
            },
        ]
    );
    check_error(
        "[control_plane]\naddress = \"cp:7443\"\n[[logs]]\npath = \"a.log\"\nservice = \"a\"\nformat = \"xml\"\n",
        "agent.toml:6:10: key `logs.format`: unknown variant `xml`, expected `plain` or `json`",
    );
    check_error(
        "[control_plane]\naddress = \"cp:7443\"\n[[logs]]\npath = \"a.log\"\n",
        "agent.toml:3:1: key `logs.service`: missing field `service`",
    );
}
