use aisemble_shared::metrics;

use super::*;

const TCP_TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   109        0 22139 1 0000000000000000 100 0 0 10 0
   1: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21011 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1538 0100007F:C2D6 01 00000000:00000000 00:00000000 00000000   109        0 64417 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:C2D6 0100007F:1538 06 00000000:00000000 03:00000F2A 00000000     0        0 0 3 0000000000000000
   4: garbage
";

#[test]
fn tcp_states_are_counted() {
    let mut counts = [0; 12];
    tcp::count_states(TCP_TABLE, &mut counts);
    assert_eq!(counts[10], 2, "listen");
    assert_eq!(counts[1], 1, "established");
    assert_eq!(counts[6], 1, "time_wait");
    assert_eq!(counts.iter().sum::<u64>(), 4);
}

#[test]
fn tcp_collector_reads_a_proc_tree_and_reports_every_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("net")).expect("mkdir");
    std::fs::write(dir.path().join("net/tcp"), TCP_TABLE).expect("write");
    let mut out = Vec::new();
    Tcp::new(dir.path())
        .collect(&mut out)
        .expect("collects without tcp6");
    assert_eq!(out.len(), 11);
    let listen = out
        .iter()
        .find(|s| s.labels[0].value == "listen")
        .expect("listen");
    assert_eq!(listen.value, 2.0);
    assert!(
        out.iter()
            .all(|s| s.name == metrics::SYSTEM_TCP_CONNECTIONS)
    );
}

#[test]
fn processes_counts_numeric_entries_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["1", "42", "self", "net", "7x"] {
        std::fs::create_dir(dir.path().join(name)).expect("mkdir");
    }
    let mut out = Vec::new();
    Processes::new(dir.path())
        .collect(&mut out)
        .expect("collects");
    assert_eq!(out[0].value, 2.0);
}

#[test]
fn every_collector_runs_on_this_host_with_known_names() {
    let Built {
        mut collectors,
        unavailable: failed,
    } = build(&aisemble_shared::config::CollectorKind::all());
    assert!(failed.is_empty(), "{failed:?}");
    std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
    let mut out = Vec::new();
    let failures = collect_all(&mut collectors, &mut out);
    assert!(failures.is_empty(), "{failures:?}");
    for name in [
        metrics::SYSTEM_CPU_USAGE_PERCENT,
        metrics::SYSTEM_MEMORY_USAGE_PERCENT,
        metrics::SYSTEM_DISK_USAGE_PERCENT,
        metrics::SYSTEM_NETWORK_RECEIVE_BYTES_TOTAL,
        metrics::SYSTEM_LOAD1,
        metrics::SYSTEM_UPTIME_SECONDS,
        metrics::SYSTEM_PROCESSES,
        metrics::SYSTEM_TCP_CONNECTIONS,
    ] {
        assert!(out.iter().any(|s| s.name == name), "{name} missing");
    }
    for sample in &out {
        assert!(
            metrics::fleet_metric(&sample.name).is_some(),
            "{} has no metadata",
            sample.name
        );
        assert!(sample.value.is_finite(), "{sample:?}");
    }
    let memory = out
        .iter()
        .find(|s| s.name == metrics::SYSTEM_MEMORY_USAGE_PERCENT)
        .expect("memory");
    assert!(memory.value > 0.0 && memory.value <= 100.0);
    let lo = out.iter().find(|s| {
        s.name == metrics::SYSTEM_NETWORK_RECEIVE_BYTES_TOTAL && s.labels[0].value == "lo"
    });
    assert!(lo.is_some(), "loopback interface missing");
}
