//! The series index: label sets to series ids, and postings (label pair → series) for selecting
//! series by matchers as PromQL does.
//!
//! Strings are interned so that a label name or value shared by thousands of series is stored
//! once. Series ids are dense `u32`s assigned in creation order, so every postings list is sorted
//! by construction and intersections are linear merges.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use aisemble_shared::metrics::METRIC_NAME_LABEL;
use promql_parser::label::Matcher;

use super::{
    head::Series,
    labels::{LabelPair, Labels},
};

/// Identifier of a series inside this store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u32);

/// Label sets, series and postings.
#[derive(Debug, Default)]
pub struct Index {
    by_labels: HashMap<Labels, SeriesId>,
    series: Vec<Arc<Series>>,
    postings: HashMap<Arc<str>, HashMap<Arc<str>, Vec<SeriesId>>>,
    strings: HashSet<Arc<str>>,
}

impl Index {
    /// Shares `s` with every other use of the same string.
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(existing) = self.strings.get(s) {
            return Arc::clone(existing);
        }
        let new: Arc<str> = Arc::from(s);
        self.strings.insert(Arc::clone(&new));
        new
    }

    /// The series with exactly these labels, if it exists.
    pub fn get(&self, labels: &Labels) -> Option<&Arc<Series>> {
        self.by_labels
            .get(labels)
            .map(|id| &self.series[id.0 as usize])
    }

    /// The series with these labels, created if new; the flag tells whether it was created.
    pub fn get_or_create(&mut self, labels: Labels) -> (Arc<Series>, bool) {
        if let Some(series) = self.get(&labels) {
            return (Arc::clone(series), false);
        }
        let id = SeriesId(self.series.len() as u32);
        self.insert(id, labels);
        (Arc::clone(&self.series[id.0 as usize]), true)
    }

    /// Adds a series with a known id (when loading the index from disk, ids are dense and come in
    /// order; a gap means the persisted series were damaged and is filled with placeholders).
    pub fn insert(&mut self, id: SeriesId, labels: Labels) {
        while self.series.len() < id.0 as usize {
            let placeholder = SeriesId(self.series.len() as u32);
            self.series
                .push(Arc::new(Series::new(placeholder, Labels::new(Vec::new()))));
        }
        for pair in labels.iter() {
            self.postings
                .entry(Arc::clone(&pair.name))
                .or_default()
                .entry(Arc::clone(&pair.value))
                .or_default()
                .push(id);
        }
        self.by_labels.insert(labels.clone(), id);
        self.series.push(Arc::new(Series::new(id, labels)));
    }

    /// The series by id.
    pub fn series(&self, id: SeriesId) -> Option<&Arc<Series>> {
        self.series.get(id.0 as usize)
    }

    /// Every series, in id order.
    pub fn all(&self) -> &[Arc<Series>] {
        &self.series
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Series whose labels satisfy every matcher (PromQL semantics: a matcher that matches the
    /// empty string also selects series that lack the label).
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        let mut result: Option<Vec<SeriesId>> = None;
        // Matchers that do not match "" restrict to series having the label: evaluate them first,
        // they are the selective ones.
        let (positive, negative): (Vec<&Matcher>, Vec<&Matcher>) =
            matchers.iter().partition(|m| !m.is_match(""));
        for matcher in positive {
            let ids = self.matching_ids(matcher);
            result = Some(match result {
                None => ids,
                Some(current) => intersect(&current, &ids),
            });
            if result.as_ref().is_some_and(Vec::is_empty) {
                return Vec::new();
            }
        }
        let mut ids =
            result.unwrap_or_else(|| (0..self.series.len() as u32).map(SeriesId).collect());
        for matcher in negative {
            // Matches "": drop only series that have the label with a value the matcher rejects.
            let rejected = self.rejected_ids(matcher);
            ids = subtract(&ids, &rejected);
        }
        ids
    }

    fn matching_ids(&self, matcher: &Matcher) -> Vec<SeriesId> {
        let Some(values) = self.postings.get(matcher.name.as_str()) else {
            return Vec::new();
        };
        let lists: Vec<&Vec<SeriesId>> = values
            .iter()
            .filter(|(v, _)| matcher.is_match(v))
            .map(|(_, ids)| ids)
            .collect();
        union(&lists)
    }

    fn rejected_ids(&self, matcher: &Matcher) -> Vec<SeriesId> {
        let Some(values) = self.postings.get(matcher.name.as_str()) else {
            return Vec::new();
        };
        let lists: Vec<&Vec<SeriesId>> = values
            .iter()
            .filter(|(v, _)| !matcher.is_match(v))
            .map(|(_, ids)| ids)
            .collect();
        union(&lists)
    }

    /// Every label name, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.postings.keys().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    /// Every value of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .postings
            .get(name)
            .map(|v| v.keys().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        values.sort();
        values
    }

    /// Builds the label set of a sample: its metric name, its labels, and `host`.
    pub fn labels_for(&mut self, name: &str, labels: &[(&str, &str)]) -> Labels {
        let mut pairs = Vec::with_capacity(labels.len() + 1);
        pairs.push(LabelPair {
            name: self.intern(METRIC_NAME_LABEL),
            value: self.intern(name),
        });
        for (n, v) in labels {
            pairs.push(LabelPair {
                name: self.intern(n),
                value: self.intern(v),
            });
        }
        Labels::new(pairs)
    }
}

fn intersect(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn subtract(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let mut j = 0;
    a.iter()
        .copied()
        .filter(|id| {
            while j < b.len() && b[j] < *id {
                j += 1;
            }
            !(j < b.len() && b[j] == *id)
        })
        .collect()
}

fn union(lists: &[&Vec<SeriesId>]) -> Vec<SeriesId> {
    match lists {
        [] => Vec::new(),
        [one] => (*one).clone(),
        _ => {
            let mut all: Vec<SeriesId> = lists.iter().flat_map(|l| l.iter().copied()).collect();
            all.sort_unstable();
            all.dedup();
            all
        }
    }
}

#[cfg(test)]
mod tests {
    use promql_parser::label::{MatchOp, Matcher};

    use super::*;

    fn index() -> Index {
        let mut index = Index::default();
        for (name, host, mount) in [
            ("disk", "a", Some("/")),
            ("disk", "a", Some("/data")),
            ("disk", "b", Some("/")),
            ("cpu", "a", None),
            ("cpu", "b", None),
        ] {
            let mut labels = vec![("host", host)];
            if let Some(mount) = mount {
                labels.push(("mount", mount));
            }
            let labels = index.labels_for(name, &labels);
            index.get_or_create(labels);
        }
        index
    }

    fn re(name: &str, pattern: &str, negate: bool) -> Matcher {
        let regex = regex::Regex::new(&format!("^(?:{pattern})$")).expect("regex");
        Matcher::new(
            if negate {
                MatchOp::NotRe(regex)
            } else {
                MatchOp::Re(regex)
            },
            name,
            pattern,
        )
    }

    #[track_caller]
    fn check(matchers: &[Matcher], expected: &[u32]) {
        let got: Vec<u32> = index()
            .select(matchers)
            .into_iter()
            .map(|id| id.0)
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn selects_like_prometheus() {
        let name = |n: &str| Matcher::new(MatchOp::Equal, "__name__", n);
        check(&[name("disk")], &[0, 1, 2]);
        check(
            &[name("disk"), Matcher::new(MatchOp::Equal, "host", "a")],
            &[0, 1],
        );
        check(
            &[name("disk"), Matcher::new(MatchOp::NotEqual, "mount", "/")],
            &[1],
        );
        check(
            &[name("cpu"), Matcher::new(MatchOp::Equal, "mount", "")],
            &[3, 4],
        );
        check(
            &[
                re("__name__", "cpu|disk", false),
                Matcher::new(MatchOp::Equal, "mount", ""),
            ],
            &[3, 4],
        );
        check(
            &[re("__name__", ".+", false), re("host", "b", true)],
            &[0, 1, 3],
        );
        check(&[name("nope")], &[]);
        check(&[re("mount", "/.*", false)], &[0, 1, 2]);
        check(
            &[name("cpu"), Matcher::new(MatchOp::NotEqual, "mount", "")],
            &[],
        );
    }

    #[test]
    fn identical_label_sets_are_one_series_and_strings_are_shared() {
        let mut index = index();
        let labels = index.labels_for("disk", &[("mount", "/"), ("host", "a")]);
        let (series, created) = index.get_or_create(labels);
        assert!(!created);
        assert_eq!(series.id, SeriesId(0));
        assert_eq!(index.label_values("host"), vec!["a", "b"]);
        assert_eq!(index.label_names(), vec!["__name__", "host", "mount"]);
        let a1 = index.intern("a");
        let a2 = index.intern("a");
        assert!(Arc::ptr_eq(&a1, &a2));
    }
}
