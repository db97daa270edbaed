use std::time::Duration;

use super::*;
use crate::alerts::{matcher::parse_list, route::GroupBy, silence::Silence, state::fingerprint};

const WAIT: i64 = 1_000;
const INTERVAL: i64 = 5_000;
const REPEAT: i64 = 60_000;

fn dispatcher(send_resolved: bool) -> Dispatcher {
    let tree = RouteTree::single(
        "team",
        GroupBy::Labels(vec!["alertname".into(), "host".into()]),
        [
            Duration::from_millis(WAIT as u64),
            Duration::from_millis(INTERVAL as u64),
            Duration::from_millis(REPEAT as u64),
        ],
    );
    let inhibit = vec![InhibitRule {
        source: parse_list("severity=critical").expect("m"),
        target: parse_list("severity=warning").expect("m"),
        equal: vec!["host".into()],
    }];
    let receivers = HashMap::from([(
        "team".to_owned(),
        vec![
            IntegrationSpec::new("slack", 0, true),
            IntegrationSpec::new("email", 0, send_resolved),
        ],
    )]);
    Dispatcher::new(tree, inhibit, receivers)
}

fn alert(
    name: &str,
    host: &str,
    severity: &str,
    starts_at: i64,
    ends_at: Option<i64>,
) -> DispatchAlert {
    let labels: LabelMap = [("alertname", name), ("host", host), ("severity", severity)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    DispatchAlert {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: LabelMap::new(),
        starts_at,
        ends_at,
        generator_url: String::new(),
    }
}

fn names(job: &FlushJob) -> Vec<String> {
    job.integrations
        .iter()
        .map(|i| i.integration.name())
        .collect()
}

fn deliver_all(d: &mut Dispatcher, jobs: &[FlushJob], now: i64) {
    for job in jobs {
        d.complete(job, &names(job), now);
    }
}

#[test]
fn notifies_after_group_wait_then_only_on_news_or_repeat() {
    let mut d = dispatcher(true);
    let none = Silences::default();
    d.ingest(vec![alert("HighCpu", "a", "warning", 0, None)], 0);
    assert!(d.poll(WAIT - 1, &none).is_empty(), "group_wait not over");
    assert_eq!(d.next_deadline(), Some(WAIT));
    let jobs = d.poll(WAIT, &none);
    assert_eq!(jobs.len(), 1);
    assert_eq!(names(&jobs[0]), ["slack", "email"]);
    assert_eq!(jobs[0].group_key, "{}:{alertname=\"HighCpu\", host=\"a\"}");
    assert_eq!(jobs[0].integrations[0].alerts.len(), 1);
    assert!(d.poll(WAIT + 1, &none).is_empty(), "in flight");
    deliver_all(&mut d, &jobs, WAIT);
    assert!(d.take_nflog_if_changed().is_some());
    assert!(d.poll(WAIT + INTERVAL, &none).is_empty(), "nothing new");
    // A second alert in the same group is news at the next group_interval.
    d.ingest(
        vec![
            alert("HighCpu", "a", "warning", 0, None),
            alert("HighCpu", "a", "info", 7_000, None),
        ],
        7_000,
    );
    let jobs = d.poll(WAIT + 2 * INTERVAL, &none);
    assert_eq!(jobs.len(), 1, "a new alert in the group is news");
    assert_eq!(jobs[0].integrations[0].alerts.len(), 2);
    deliver_all(&mut d, &jobs, WAIT + 2 * INTERVAL);
    // Repeat after repeat_interval.
    let mut t = WAIT + 2 * INTERVAL;
    let mut repeated = false;
    while t <= WAIT + REPEAT + 4 * INTERVAL {
        t += INTERVAL;
        let jobs = d.poll(t, &none);
        if !jobs.is_empty() {
            assert!(t - (WAIT + 2 * INTERVAL) > REPEAT, "repeated at {t}");
            repeated = true;
            deliver_all(&mut d, &jobs, t);
            break;
        }
    }
    assert!(repeated);
}

#[test]
fn resolution_is_notified_once_and_the_group_ends() {
    let mut d = dispatcher(false);
    let none = Silences::default();
    d.ingest(vec![alert("X", "a", "warning", 0, None)], 0);
    let jobs = d.poll(WAIT, &none);
    deliver_all(&mut d, &jobs, WAIT);
    d.ingest(vec![alert("X", "a", "warning", 0, Some(3_000))], 3_000);
    let jobs = d.poll(WAIT + INTERVAL, &none);
    assert_eq!(jobs.len(), 1);
    let slack = &jobs[0].integrations[0];
    assert_eq!(slack.alerts.len(), 1);
    assert!(slack.alerts[0].resolved(WAIT + INTERVAL));
    let email = &jobs[0].integrations[1];
    assert!(
        email.alerts.is_empty(),
        "send_resolved off: logged, not sent"
    );
    deliver_all(&mut d, &jobs, WAIT + INTERVAL);
    assert_eq!(
        d.group_count(),
        0,
        "resolved alerts leave, the empty group ends"
    );
    assert!(d.poll(WAIT + 3 * INTERVAL, &none).is_empty());
}

#[test]
fn failed_deliveries_are_retried_at_the_next_flush() {
    let mut d = dispatcher(true);
    let none = Silences::default();
    d.ingest(vec![alert("X", "a", "warning", 0, None)], 0);
    let jobs = d.poll(WAIT, &none);
    d.complete(&jobs[0], &["email".to_owned()], WAIT);
    let jobs = d.poll(WAIT + INTERVAL, &none);
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        names(&jobs[0]),
        ["slack"],
        "only the integration that failed"
    );
}

#[test]
fn silences_and_inhibition_mute() {
    let mut d = dispatcher(true);
    let mut silences = Silences::default();
    silences
        .upsert(
            Silence {
                id: "s".into(),
                matchers: parse_list("alertname=Silenced").expect("m"),
                starts_at: 0,
                ends_at: 100_000,
                created_by: "me".into(),
                comment: "c".into(),
                updated_at: 0,
            },
            0,
        )
        .expect("valid");
    let warning = alert("DiskFull", "a", "warning", 0, None);
    let critical = alert("DiskFull", "a", "critical", 0, None);
    let other_host = alert("DiskFull", "b", "warning", 0, None);
    let silenced = alert("Silenced", "a", "warning", 0, None);
    d.ingest(
        vec![
            warning.clone(),
            critical.clone(),
            other_host,
            silenced.clone(),
        ],
        0,
    );
    let (s, i) = d.muted_by(&warning.labels, &silences, 10);
    assert!(s.is_empty());
    assert_eq!(i, std::slice::from_ref(&critical.fingerprint));
    assert_eq!(d.muted_by(&silenced.labels, &silences, 10).0, ["s"]);
    let jobs = d.poll(WAIT, &silences);
    let sent: Vec<String> = jobs
        .iter()
        .flat_map(|j| {
            j.integrations[0]
                .alerts
                .iter()
                .map(|a| format!("{}/{}", a.labels["host"], a.labels["severity"]))
        })
        .collect();
    assert_eq!(sent, ["a/critical", "b/warning"]);
}

#[test]
fn a_restart_with_the_log_does_not_notify_again() {
    let mut d = dispatcher(true);
    let none = Silences::default();
    let firing = alert("X", "a", "warning", 0, None);
    d.ingest(vec![firing.clone()], 0);
    let jobs = d.poll(WAIT, &none);
    deliver_all(&mut d, &jobs, WAIT);
    let log = d.take_nflog_if_changed().expect("changed").clone();
    // A new process: same alerts, same log.
    let mut restarted = dispatcher(true);
    restarted.restore_nflog(log);
    restarted.ingest(vec![firing], 30_000);
    assert_eq!(
        restarted.next_deadline(),
        Some(30_000),
        "an old alert flushes at once"
    );
    assert!(restarted.poll(30_000, &none).is_empty(), "already notified");
    // Without the log it would notify.
    let mut amnesiac = dispatcher(true);
    amnesiac.ingest(vec![alert("X", "a", "warning", 0, None)], 30_000);
    assert_eq!(amnesiac.poll(30_000, &none).len(), 1);
}

#[test]
fn vanished_alerts_resolve() {
    let mut d = dispatcher(true);
    let none = Silences::default();
    d.ingest(vec![alert("X", "a", "warning", 0, None)], 0);
    let jobs = d.poll(WAIT, &none);
    deliver_all(&mut d, &jobs, WAIT);
    d.ingest(Vec::new(), 2_000);
    let jobs = d.poll(WAIT + INTERVAL, &none);
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].integrations[0].alerts[0].resolved(WAIT + INTERVAL));
}
