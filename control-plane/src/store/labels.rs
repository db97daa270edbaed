//! Label sets of stored series: sorted by name, `__name__` included, strings shared.

use std::{fmt, sync::Arc};

/// A label pair whose strings are shared across series (one `Arc<str>` per distinct string).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelPair {
    /// Name.
    pub name: Arc<str>,
    /// Value.
    pub value: Arc<str>,
}

/// The identity of a series: label pairs sorted by name, unique names, `__name__` included.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<[LabelPair]>);

impl Labels {
    /// Sorts and deduplicates pairs (the first of duplicate names wins).
    pub fn new(mut pairs: Vec<LabelPair>) -> Self {
        pairs.sort_by(|a, b| a.name.cmp(&b.name));
        pairs.dedup_by(|later, earlier| later.name == earlier.name);
        Self(pairs.into())
    }

    /// The value of label `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|pair| (*pair.name).cmp(name))
            .ok()
            .map(|i| &*self.0[i].value)
    }

    /// The metric name (`__name__`), or "" if absent.
    pub fn metric_name(&self) -> &str {
        self.get(aisemble_shared::metrics::METRIC_NAME_LABEL)
            .unwrap_or("")
    }

    /// Pairs in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &LabelPair> {
        self.0.iter()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// As a JSON object `{"name": "value", ...}` in name order (Prometheus' `metric`).
impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for pair in self.iter() {
            map.serialize_entry(&*pair.name, &*pair.value)?;
        }
        map.end()
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Labels {
    /// Prometheus notation: `name{a="1", b="2"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.metric_name())?;
        f.write_str("{")?;
        let mut first = true;
        for pair in self
            .iter()
            .filter(|p| &*p.name != aisemble_shared::metrics::METRIC_NAME_LABEL)
        {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", pair.name, &*pair.value)?;
        }
        f.write_str("}")
    }
}
