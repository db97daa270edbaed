use aisemble_shared::wire::{BufferStats, Hello};

use super::*;

fn hello() -> Hello {
    Hello {
        agent_version: "1.0.0".into(),
        hostname: "host".into(),
        labels: Vec::new(),
        journal_id: 7,
        buffer: BufferStats::default(),
    }
}

fn names(registry: &Registry) -> Vec<String> {
    registry.list().into_iter().map(|a| a.record.name).collect()
}

#[test]
fn a_forgotten_agent_is_gone_from_the_inventory_and_from_disk() {
    let db = sled::Config::new().temporary(true).open().expect("sled");
    let tree = db.open_tree("agents").expect("tree");
    let registry = Registry::open(tree.clone()).expect("opens");
    registry.hello("a", &hello(), "01");
    registry.hello("b", &hello(), "02");
    assert_eq!(registry.persist().expect("persists"), 2);

    // A change queued before the removal does not bring it back.
    registry.seen("a", BufferStats::default());
    let record = registry.forget("a").expect("forgets");
    assert_eq!(record.name, "a");
    assert_eq!(registry.forget("a"), Err(ForgetError::Unknown("a".into())));
    assert_eq!(names(&registry), ["b"]);
    assert_eq!(registry.counts(), (0, 1));
    registry.persist().expect("persists");
    assert_eq!(
        names(&Registry::open(tree.clone()).expect("reopens")),
        ["b"]
    );

    // It connects again: registered anew.
    registry.hello("a", &hello(), "03");
    registry.persist().expect("persists");
    assert_eq!(names(&Registry::open(tree).expect("reopens")), ["a", "b"]);
}
