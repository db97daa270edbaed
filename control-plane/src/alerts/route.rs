//! The routing tree, as Alertmanager's: an alert descends from the root into the first child
//! whose matchers it satisfies (and into later siblings too when a child says `continue`); the
//! deepest matching routes receive it. Each route groups alerts by its `group_by` labels and
//! times notifications with `group_wait`, `group_interval` and `repeat_interval`, inherited from
//! the parent when unset. The tree is flattened into a vector; `0` is the root.

use std::time::Duration;

use super::{matcher::Matcher, state::LabelMap};

/// How a route groups alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// By these labels.
    Labels(Vec<String>),
    /// By every label (`group_by: ['...']`): one group per alert.
    All,
}

/// One node of the tree.
#[derive(Debug, Clone)]
pub struct Route {
    /// Alertmanager's route key (`{}/{severity="critical"}`), the prefix of group keys.
    pub key: String,
    /// Receiver name.
    pub receiver: String,
    /// Grouping.
    pub group_by: GroupBy,
    /// Wait before the first notification of a new group.
    pub group_wait: Duration,
    /// Wait before notifying about changes to a group.
    pub group_interval: Duration,
    /// Wait before repeating an unchanged notification.
    pub repeat_interval: Duration,
    /// All must match (the root has none).
    pub matchers: Vec<Matcher>,
    /// Keep matching later siblings.
    pub continue_matching: bool,
    /// Children, by index.
    pub children: Vec<usize>,
}

/// The flattened tree.
#[derive(Debug, Clone)]
pub struct RouteTree {
    /// Nodes; 0 is the root.
    pub routes: Vec<Route>,
}

impl RouteTree {
    /// A tree with only a root.
    pub fn single(receiver: &str, group_by: GroupBy, timings: [Duration; 3]) -> Self {
        Self {
            routes: vec![Route {
                key: "{}".into(),
                receiver: receiver.to_owned(),
                group_by,
                group_wait: timings[0],
                group_interval: timings[1],
                repeat_interval: timings[2],
                matchers: Vec::new(),
                continue_matching: false,
                children: Vec::new(),
            }],
        }
    }

    /// The routes `labels` ends up in.
    pub fn matching(&self, labels: &LabelMap) -> Vec<usize> {
        let mut out = Vec::new();
        self.descend(0, labels, &mut out);
        out
    }

    fn descend(&self, idx: usize, labels: &LabelMap, out: &mut Vec<usize>) -> bool {
        let Some(route) = self.routes.get(idx) else {
            return false;
        };
        if !route.matchers.iter().all(|m| m.matches(labels)) {
            return false;
        }
        let before = out.len();
        for &child in &route.children {
            let matched = self.descend(child, labels, out);
            if matched && !self.routes[child].continue_matching {
                break;
            }
        }
        if out.len() == before {
            out.push(idx);
        }
        true
    }

    /// The group labels of `labels` under route `idx`.
    pub fn group_labels(&self, idx: usize, labels: &LabelMap) -> LabelMap {
        match self.routes.get(idx).map(|r| &r.group_by) {
            Some(GroupBy::All) => labels.clone(),
            Some(GroupBy::Labels(names)) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
            None => LabelMap::new(),
        }
    }

    /// Alertmanager's group key: `<route key>:<group labels>`.
    pub fn group_key(&self, idx: usize, group_labels: &LabelMap) -> String {
        let labels: Vec<String> = group_labels
            .iter()
            .map(|(k, v)| format!("{k}={}", super::gofmt::go_quote(v)))
            .collect();
        format!(
            "{}:{{{}}}",
            self.routes.get(idx).map_or("{}", |r| r.key.as_str()),
            labels.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::matcher::parse_list;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn child(key: &str, receiver: &str, matchers: &str, cont: bool) -> Route {
        Route {
            key: key.into(),
            receiver: receiver.into(),
            group_by: GroupBy::Labels(vec!["alertname".into()]),
            group_wait: Duration::from_secs(1),
            group_interval: Duration::from_secs(1),
            repeat_interval: Duration::from_secs(1),
            matchers: parse_list(matchers).expect("matchers"),
            continue_matching: cont,
            children: Vec::new(),
        }
    }

    #[test]
    fn alerts_go_to_the_deepest_matching_routes() {
        let mut tree = RouteTree::single(
            "default",
            GroupBy::Labels(vec!["alertname".into(), "host".into()]),
            [Duration::from_secs(30); 3],
        );
        tree.routes.push(child(
            "{}/{severity=\"critical\"}",
            "pager",
            "severity=critical",
            true,
        ));
        tree.routes
            .push(child("{}/{team=\"db\"}", "db", "team=db", false));
        tree.routes
            .push(child("{}/{team=~\".*\"}", "never", "team=~\".*\"", false));
        tree.routes[0].children = vec![1, 2, 3];
        let critical_db = labels(&[("severity", "critical"), ("team", "db"), ("alertname", "X")]);
        assert_eq!(
            tree.matching(&critical_db),
            [1, 2],
            "continue on the first, stop after the second"
        );
        assert_eq!(tree.matching(&labels(&[("team", "web")])), [3]);
        assert_eq!(tree.matching(&labels(&[("severity", "critical")])), [1, 3]);
        let group = tree.group_labels(0, &labels(&[("alertname", "X"), ("host", "a"), ("x", "y")]));
        assert_eq!(
            tree.group_key(0, &group),
            "{}:{alertname=\"X\", host=\"a\"}"
        );
    }
}
