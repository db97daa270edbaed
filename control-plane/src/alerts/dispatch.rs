//! The dispatcher: Alertmanager's core without its network. Alerts come in from the rule
//! manager after every evaluation; each goes to the aggregation groups of the routes it matches;
//! each group flushes `group_wait` after it is created and every `group_interval` after that. A
//! flush drops muted alerts (silenced, or inhibited by a firing source alert), then asks, per
//! receiver integration, whether the notification log says this news is already out
//! (Alertmanager's `DedupStage`: new firing alerts, newly resolved ones when `send_resolved`, or
//! `repeat_interval` elapsed). What must be sent leaves as [`FlushJob`]s; their outcome comes
//! back through [`Dispatcher::complete`], which updates the log. The log is what makes
//! notifications exactly-once across restarts: the caller persists [`Dispatcher::nflog`].
//!
//! Pure: time comes in as `now` (ms since the epoch), nothing here does I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::{
    matcher::{Matcher, all_match},
    route::RouteTree,
    silence::Silences,
    state::LabelMap,
};
use crate::query::duration_ms;

/// Notification log entries are dropped this long after their last update (Alertmanager's
/// default data retention).
pub const NFLOG_RETENTION_MS: i64 = 120 * 3_600_000;

/// An alert as the dispatcher sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchAlert {
    /// Label fingerprint.
    pub fingerprint: String,
    /// Labels.
    pub labels: LabelMap,
    /// Annotations.
    pub annotations: LabelMap,
    /// When it started firing (ms).
    pub starts_at: i64,
    /// When it resolved (ms), if it did.
    pub ends_at: Option<i64>,
    /// Link to the rule.
    pub generator_url: String,
}

impl DispatchAlert {
    /// Whether it has resolved by `now`.
    pub fn resolved(&self, now: i64) -> bool {
        self.ends_at.is_some_and(|end| end <= now)
    }
}

/// `source_matchers` firing inhibit `target_matchers` alerts that agree on `equal`.
#[derive(Debug, Clone)]
pub struct InhibitRule {
    /// What inhibits.
    pub source: Vec<Matcher>,
    /// What is inhibited.
    pub target: Vec<Matcher>,
    /// Labels that must be equal (both missing counts as equal).
    pub equal: Vec<String>,
}

/// One integration of a receiver, as the dispatcher needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationSpec {
    /// `slack`, `email`, `webhook`, `alertmanager`.
    pub kind: String,
    /// Position among the receiver's integrations of that kind.
    pub index: usize,
    /// Whether resolved alerts are sent.
    pub send_resolved: bool,
    /// Resend unchanged firing alerts at least this often (an Alertmanager resolves alerts it
    /// stops hearing about), whatever the route's `repeat_interval`.
    pub resend_every_ms: Option<i64>,
}

impl IntegrationSpec {
    /// An integration that follows the route's timings.
    pub fn new(kind: &str, index: usize, send_resolved: bool) -> Self {
        Self {
            kind: kind.to_owned(),
            index,
            send_resolved,
            resend_every_ms: None,
        }
    }

    /// `slack`, `slack[1]`: the kind, and the position for the second one of a kind on.
    pub fn name(&self) -> String {
        if self.index == 0 {
            self.kind.clone()
        } else {
            format!("{}[{}]", self.kind, self.index)
        }
    }
}

/// Why an alert is muted at `now`: the ids of the silences muting it, and the fingerprints of
/// the firing alerts that inhibit it.
pub fn muted_by<'a>(
    labels: &LabelMap,
    silences: &Silences,
    inhibit: &[InhibitRule],
    alerts: impl Iterator<Item = &'a DispatchAlert> + Clone,
    now: i64,
) -> (Vec<String>, Vec<String>) {
    let silenced = silences.muting(labels, now);
    let fingerprint = super::state::fingerprint(labels);
    let mut inhibited = Vec::new();
    for rule in inhibit {
        if !all_match(&rule.target, labels) {
            continue;
        }
        for source in alerts.clone() {
            if source.fingerprint == fingerprint
                || source.resolved(now)
                || !all_match(&rule.source, &source.labels)
            {
                continue;
            }
            let equal = rule
                .equal
                .iter()
                .all(|name| source.labels.get(name) == labels.get(name));
            if equal && !inhibited.contains(&source.fingerprint) {
                inhibited.push(source.fingerprint.clone());
            }
        }
    }
    (silenced, inhibited)
}

/// A notification log entry: what one integration was last told about one group.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct NflogEntry {
    /// Firing fingerprints notified.
    pub firing: BTreeSet<String>,
    /// Resolved fingerprints notified.
    pub resolved: BTreeSet<String>,
    /// When (ms).
    pub at_ms: i64,
}

/// `(group key, receiver, integration name)`.
pub type NflogKey = (String, String, String);

/// What one flush asks one integration to send.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationJob {
    /// The integration.
    pub integration: IntegrationSpec,
    /// Alerts to put in the notification (resolved ones dropped when `send_resolved` is off);
    /// empty means "nothing to send, but log it".
    pub alerts: Vec<DispatchAlert>,
    /// The log entry to write when it succeeds.
    pub entry: NflogEntry,
}

/// A flush that has something to tell some integrations.
#[derive(Debug, Clone, PartialEq)]
pub struct FlushJob {
    /// Job id, for [`Dispatcher::complete`].
    pub id: u64,
    /// Group key.
    pub group_key: String,
    /// Receiver.
    pub receiver: String,
    /// The group's labels.
    pub group_labels: LabelMap,
    /// Per integration that must be told.
    pub integrations: Vec<IntegrationJob>,
}

#[derive(Debug, Clone)]
struct AggrGroup {
    route: usize,
    labels: LabelMap,
    alerts: BTreeMap<String, DispatchAlert>,
    next_flush: i64,
    has_flushed: bool,
    in_flight: Option<u64>,
}

/// The dispatcher. See the module documentation.
#[derive(Debug)]
pub struct Dispatcher {
    tree: RouteTree,
    inhibit: Vec<InhibitRule>,
    receivers: HashMap<String, Vec<IntegrationSpec>>,
    alerts: BTreeMap<String, DispatchAlert>,
    groups: BTreeMap<String, AggrGroup>,
    nflog: BTreeMap<NflogKey, NflogEntry>,
    nflog_dirty: bool,
    next_job: u64,
    in_flight: HashMap<u64, (String, Vec<(String, bool)>)>,
}

impl Dispatcher {
    /// A dispatcher for a routing tree, inhibition rules and receivers (name → integrations).
    pub fn new(
        tree: RouteTree,
        inhibit: Vec<InhibitRule>,
        receivers: HashMap<String, Vec<IntegrationSpec>>,
    ) -> Self {
        Self {
            tree,
            inhibit,
            receivers,
            alerts: BTreeMap::new(),
            groups: BTreeMap::new(),
            nflog: BTreeMap::new(),
            nflog_dirty: false,
            next_job: 0,
            in_flight: HashMap::new(),
        }
    }

    /// Replaces routing, inhibition and receivers (config reload), keeping the alerts and the
    /// notification log; groups are rebuilt under the new tree.
    pub fn reconfigure(
        &mut self,
        tree: RouteTree,
        inhibit: Vec<InhibitRule>,
        receivers: HashMap<String, Vec<IntegrationSpec>>,
        now: i64,
    ) {
        self.tree = tree;
        self.inhibit = inhibit;
        self.receivers = receivers;
        self.groups.clear();
        self.in_flight.clear();
        let alerts: Vec<DispatchAlert> = self.alerts.values().cloned().collect();
        for alert in alerts {
            self.place(&alert, now);
        }
    }

    /// Loads a persisted notification log.
    pub fn restore_nflog(&mut self, entries: BTreeMap<NflogKey, NflogEntry>) {
        self.nflog = entries;
    }

    /// The notification log, if it changed since the last call.
    pub fn take_nflog_if_changed(&mut self) -> Option<&BTreeMap<NflogKey, NflogEntry>> {
        if std::mem::take(&mut self.nflog_dirty) {
            Some(&self.nflog)
        } else {
            None
        }
    }

    /// The current alerts (firing, and resolved ones not yet notified).
    pub fn alerts(&self) -> impl Iterator<Item = &DispatchAlert> {
        self.alerts.values()
    }

    /// Replaces the alert set with what the rule manager reports (firing alerts and resolved ones
    /// within retention). An alert that disappears without resolving is resolved now.
    pub fn ingest(&mut self, incoming: Vec<DispatchAlert>, now: i64) {
        let seen: BTreeSet<String> = incoming.iter().map(|a| a.fingerprint.clone()).collect();
        let vanished: Vec<String> = self
            .alerts
            .keys()
            .filter(|fp| !seen.contains(*fp))
            .cloned()
            .collect();
        for fp in vanished {
            if let Some(mut alert) = self.alerts.remove(&fp)
                && alert.ends_at.is_none()
            {
                alert.ends_at = Some(now);
                self.place(&alert, now);
            }
        }
        for alert in incoming {
            if self.alerts.get(&alert.fingerprint) != Some(&alert) {
                self.place(&alert, now);
                self.alerts.insert(alert.fingerprint.clone(), alert);
            }
        }
    }

    fn place(&mut self, alert: &DispatchAlert, now: i64) {
        for route_idx in self.tree.matching(&alert.labels) {
            let labels = self.tree.group_labels(route_idx, &alert.labels);
            let key = self.tree.group_key(route_idx, &labels);
            let wait = duration_ms(self.tree.routes[route_idx].group_wait);
            let group = self.groups.entry(key).or_insert_with(|| AggrGroup {
                route: route_idx,
                labels,
                alerts: BTreeMap::new(),
                next_flush: now + wait,
                has_flushed: false,
                in_flight: None,
            });
            // An alert older than group_wait in a new group is news already: flush now.
            if !group.has_flushed && alert.starts_at + wait < now {
                group.next_flush = group.next_flush.min(now);
            }
            group
                .alerts
                .insert(alert.fingerprint.clone(), alert.clone());
        }
    }

    /// When the next flush is due, if any group is waiting.
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups
            .values()
            .filter(|g| g.in_flight.is_none())
            .map(|g| g.next_flush)
            .min()
    }

    /// Why an alert is muted now (see [`muted_by`]).
    pub fn muted_by(
        &self,
        labels: &LabelMap,
        silences: &Silences,
        now: i64,
    ) -> (Vec<String>, Vec<String>) {
        muted_by(labels, silences, &self.inhibit, self.alerts.values(), now)
    }

    /// The inhibition rules in force.
    pub fn inhibit_rules(&self) -> &[InhibitRule] {
        &self.inhibit
    }

    /// Flushes every group that is due; returns what must be sent.
    pub fn poll(&mut self, now: i64, silences: &Silences) -> Vec<FlushJob> {
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.in_flight.is_none() && g.next_flush <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut jobs = Vec::new();
        for key in due {
            let Some(group) = self.groups.get(&key) else {
                continue;
            };
            let route = &self.tree.routes[group.route];
            let repeat = duration_ms(route.repeat_interval);
            let interval = duration_ms(route.group_interval);
            let receiver = route.receiver.clone();
            let mut firing = BTreeSet::new();
            let mut resolved = BTreeSet::new();
            let mut unmuted = Vec::new();
            for alert in group.alerts.values() {
                let (silenced, inhibited) = self.muted_by(&alert.labels, silences, now);
                if !silenced.is_empty() || !inhibited.is_empty() {
                    continue;
                }
                if alert.resolved(now) {
                    resolved.insert(alert.fingerprint.clone());
                } else {
                    firing.insert(alert.fingerprint.clone());
                }
                unmuted.push(alert.clone());
            }
            let mut integrations = Vec::new();
            for integration in self.receivers.get(&receiver).into_iter().flatten() {
                let log_key = (key.clone(), receiver.clone(), integration.name());
                let entry = self.nflog.get(&log_key);
                let repeat = integration
                    .resend_every_ms
                    .map_or(repeat, |r| r.min(repeat));
                if !needs_update(
                    entry,
                    &firing,
                    &resolved,
                    integration.send_resolved,
                    repeat,
                    now,
                ) {
                    continue;
                }
                let alerts: Vec<DispatchAlert> = if integration.send_resolved {
                    unmuted.clone()
                } else if firing.is_empty() {
                    Vec::new()
                } else {
                    unmuted
                        .iter()
                        .filter(|a| !a.resolved(now))
                        .cloned()
                        .collect()
                };
                integrations.push(IntegrationJob {
                    integration: integration.clone(),
                    alerts,
                    entry: NflogEntry {
                        firing: firing.clone(),
                        resolved: resolved.clone(),
                        at_ms: now,
                    },
                });
            }
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            group.has_flushed = true;
            group.next_flush = now + interval;
            if integrations.is_empty() {
                Self::drop_notified_resolved(group, now);
                if group.alerts.is_empty() {
                    self.groups.remove(&key);
                }
                continue;
            }
            self.next_job += 1;
            let id = self.next_job;
            group.in_flight = Some(id);
            let updated: Vec<(String, bool)> = group
                .alerts
                .values()
                .map(|a| (a.fingerprint.clone(), a.resolved(now)))
                .collect();
            self.in_flight.insert(id, (key.clone(), updated));
            jobs.push(FlushJob {
                id,
                group_key: key.clone(),
                receiver,
                group_labels: group.labels.clone(),
                integrations,
            });
        }
        jobs
    }

    /// Reports a job's outcome: `succeeded` lists the integrations (by name) that delivered.
    /// Their log entries are written; if every integration delivered, resolved alerts leave the
    /// group.
    pub fn complete(&mut self, job: &FlushJob, succeeded: &[String], now: i64) {
        let Some((key, snapshot)) = self.in_flight.remove(&job.id) else {
            return;
        };
        for integration in &job.integrations {
            if succeeded.contains(&integration.integration.name()) {
                self.nflog.insert(
                    (
                        key.clone(),
                        job.receiver.clone(),
                        integration.integration.name(),
                    ),
                    integration.entry.clone(),
                );
                self.nflog_dirty = true;
            }
        }
        let all_delivered = job
            .integrations
            .iter()
            .all(|i| succeeded.contains(&i.integration.name()));
        let Some(group) = self.groups.get_mut(&key) else {
            return;
        };
        if group.in_flight == Some(job.id) {
            group.in_flight = None;
        }
        if all_delivered {
            // Only alerts still as they were when the flush began.
            for (fp, was_resolved) in snapshot {
                if was_resolved && group.alerts.get(&fp).is_some_and(|a| a.resolved(now)) {
                    group.alerts.remove(&fp);
                }
            }
        }
        if group.alerts.is_empty() {
            self.groups.remove(&key);
        }
    }

    fn drop_notified_resolved(group: &mut AggrGroup, now: i64) {
        group.alerts.retain(|_, a| !a.resolved(now));
    }

    /// Drops alerts resolved long ago from the dispatcher's view and old log entries.
    pub fn gc(&mut self, now: i64) {
        let before = self.nflog.len();
        self.nflog
            .retain(|_, e| now - e.at_ms <= NFLOG_RETENTION_MS);
        if self.nflog.len() != before {
            self.nflog_dirty = true;
        }
    }

    /// Number of aggregation groups.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }
}

/// Alertmanager's `DedupStage.needsUpdate`.
fn needs_update(
    entry: Option<&NflogEntry>,
    firing: &BTreeSet<String>,
    resolved: &BTreeSet<String>,
    send_resolved: bool,
    repeat_ms: i64,
    now: i64,
) -> bool {
    let Some(entry) = entry else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&entry.firing) {
        return true;
    }
    if firing.is_empty() {
        // Everything resolved: tell whoever was told about firing alerts (this also clears the
        // log when send_resolved is off).
        return !entry.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&entry.resolved) {
        return true;
    }
    entry.at_ms < now - repeat_ms
}

#[cfg(test)]
mod tests;
