use std::collections::BTreeSet;

use serde::Serialize;
use utoipa::openapi::{RefOr, schema::Schema};

use super::*;
use crate::{
    alerts::{
        manager::{AlertView, GroupView, RuleView},
        silence::MatcherRecord,
    },
    store::StoredEvent,
    views::{ModelView, Quantiles, ServiceView, UsageView, Views},
};
use aisemble_shared::wire::{CheckStateChange, Event, Label};

fn properties<D: ToSchema>() -> BTreeSet<String> {
    match D::schema() {
        RefOr::T(Schema::Object(object)) => object.properties.keys().cloned().collect(),
        _ => panic!("{} is not an object schema", D::name()),
    }
}

/// The mirror `D` has exactly the fields `value` serializes.
#[track_caller]
fn check<D: ToSchema>(value: &impl Serialize) {
    let json = serde_json::to_value(value).expect("serializes");
    let keys: BTreeSet<String> = json
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, properties::<D>(), "{}", D::name());
}

#[test]
fn mirrors_have_the_fields_of_their_types() {
    check::<QuantilesDoc>(&Quantiles::default());
    check::<ModelViewDoc>(&ModelView::default());
    check::<ServiceViewDoc>(&ServiceView::default());
    check::<UsageViewDoc>(&UsageView::default());
    check::<ViewsDoc>(&Views::default());
    let change = CheckStateChange {
        check: "db".into(),
        kind: "tcp".into(),
        was_up: None,
        up: false,
        consecutive_failures: 1,
        error: Some("refused".into()),
        labels: vec![Label {
            name: "service".into(),
            value: "db".into(),
        }],
    };
    check::<CheckStateChangeDoc>(&change);
    check::<LabelDoc>(&change.labels[0]);
    let event = StoredEvent {
        agent: "a".into(),
        timestamp_ms: 1,
        event: Event::CheckStateChanged(change),
    };
    check::<StoredEventDoc>(&event);
    let json = serde_json::to_value(&event).expect("serializes");
    assert!(json["event"]["CheckStateChanged"].is_object(), "{json}");
    check::<MatcherDoc>(&MatcherRecord {
        name: "a".into(),
        value: "b".into(),
        is_regex: false,
        is_equal: true,
    });
    let alert = AlertView {
        name: "A".into(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        state: "firing",
        value: 1.0,
        active_at_ms: 1,
        fired_at_ms: None,
        resolved_at_ms: None,
        fingerprint: "f".into(),
        group: "g".into(),
        file: "f.yml".into(),
    };
    check::<AlertViewDoc>(&alert);
    let rule = RuleView {
        name: "A".into(),
        kind: "alerting",
        query: "up == 0".into(),
        duration: 0.0,
        keep_firing_for: 0.0,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        health: "ok",
        last_error: None,
        state: "firing",
        evaluation_time: 0.0,
        last_evaluation_ms: None,
        alerts: vec![alert],
    };
    check::<RuleViewDoc>(&rule);
    check::<GroupViewDoc>(&GroupView {
        name: "g".into(),
        file: "f.yml".into(),
        interval: 1.0,
        rules: vec![rule],
    });
}
