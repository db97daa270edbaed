use proptest::prelude::*;

use super::*;
use crate::{query::memory::MemorySeries, store::StoreOptions};

/// 2026-12-01T00:00:00Z.
const DECEMBER: i64 = 1_796_083_200_000;
const MINUTE: i64 = 60_000;

fn cost(host: &str, provider: &str, model: &str) -> Labels {
    MemorySeries::labels(&[
        ("__name__", names::MODEL_COST_USD_TOTAL),
        ("host", host),
        ("provider", provider),
        ("model", model),
    ])
}

fn tokens(host: &str, model: &str, direction: &str) -> Labels {
    MemorySeries::labels(&[
        ("__name__", names::MODEL_TOKENS_TOTAL),
        ("host", host),
        ("provider", "openai"),
        ("model", model),
        ("direction", direction),
    ])
}

#[track_caller]
fn check(samples: &[(i64, f64)], expected: f64) {
    let mut ledger = Ledger::default();
    ledger.start_month(DECEMBER);
    let labels = cost("a", "openai", "gpt");
    ledger.fold(&labels, samples);
    let usage = ledger.usage(None);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].cost_usd, expected, "{samples:?}");
}

#[test]
fn a_month_counts_from_the_last_sample_before_it() {
    // Running since November: only December's part counts.
    check(&[(DECEMBER - MINUTE, 10.0), (DECEMBER + MINUTE, 12.5)], 2.5);
    // Born in December: all of it.
    check(
        &[(DECEMBER + MINUTE, 3.0), (DECEMBER + 2 * MINUTE, 4.0)],
        4.0,
    );
    // A reset (the agent restarted): the new value counts whole.
    check(
        &[
            (DECEMBER - MINUTE, 10.0),
            (DECEMBER + MINUTE, 12.0),
            (DECEMBER + 2 * MINUTE, 1.0),
            (DECEMBER + 3 * MINUTE, 2.0),
        ],
        4.0,
    );
    // Staleness markers are not values; November alone is nothing.
    check(
        &[
            (DECEMBER - MINUTE, 10.0),
            (DECEMBER + MINUTE, f64::NAN),
            (DECEMBER + 2 * MINUTE, 11.0),
        ],
        1.0,
    );
    check(
        &[(DECEMBER - 2 * MINUTE, 1.0), (DECEMBER - MINUTE, 10.0)],
        0.0,
    );
}

#[test]
fn usage_is_grouped_by_provider_and_model_and_filtered_by_host() {
    let mut ledger = Ledger::default();
    ledger.start_month(DECEMBER);
    let t = |m: i64| DECEMBER + m * MINUTE;
    ledger.fold(&cost("a", "openai", "gpt"), &[(t(1), 1.0), (t(2), 3.0)]);
    ledger.fold(&cost("b", "openai", "gpt"), &[(t(1), 0.5)]);
    ledger.fold(&cost("b", "", "local"), &[(t(1), 0.25)]);
    ledger.fold(&tokens("a", "gpt", "in"), &[(t(1), 100.0)]);
    ledger.fold(&tokens("a", "gpt", "out"), &[(t(1), 40.0)]);
    let fleet = ledger.usage(None);
    let rows: Vec<(&str, &str, f64, f64, f64)> = fleet
        .iter()
        .map(|u| {
            (
                &*u.provider,
                &*u.model,
                u.tokens_in,
                u.tokens_out,
                u.cost_usd,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("unknown", "local", 0.0, 0.0, 0.25),
            ("openai", "gpt", 100.0, 40.0, 3.5)
        ],
        "ordered by the provider as reported (none first)"
    );
    let b = ledger.usage(Some("b"));
    assert_eq!(b.len(), 2);
    assert_eq!(b[1].cost_usd, 0.5);
    assert!(ledger.usage(Some("c")).is_empty());

    // January starts from nothing.
    ledger.start_month(DECEMBER + 31 * 86_400_000);
    assert!(ledger.usage(None).is_empty());
    ledger.start_month(DECEMBER + 31 * 86_400_000);
    assert_eq!(
        ledger.next_read_from(&cost("a", "openai", "gpt")),
        DECEMBER + 31 * 86_400_000 - BASELINE_LOOKBACK_MS
    );
}

proptest! {
    /// Folding a counter's samples in any number of reads gives what one read gives.
    #[test]
    fn folding_in_pieces_is_folding_at_once(
        steps in prop::collection::vec((1i64..600_000, 0.0f64..100.0, any::<bool>()), 1..60),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
    ) {
        let mut t = DECEMBER - 30 * MINUTE;
        let mut value = 0.0;
        let mut samples = Vec::new();
        for (dt, dv, reset) in steps {
            t += dt;
            value = if reset { dv } else { value + dv };
            samples.push((t, value));
        }
        let labels = cost("a", "p", "m");
        let mut once = Ledger::default();
        once.start_month(DECEMBER);
        once.fold(&labels, &samples);

        let mut pieces = Ledger::default();
        pieces.start_month(DECEMBER);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(samples.len() + 1)).collect();
        cuts.sort_unstable();
        let mut from = 0;
        for cut in cuts.into_iter().chain([samples.len()]) {
            // Each read starts where the ledger says; overlap with what was folded is ignored.
            let next = pieces.next_read_from(&labels);
            let read: Vec<(i64, f64)> =
                samples[..cut].iter().copied().filter(|(t, _)| *t >= next).collect();
            pieces.fold(&labels, &read);
            from = from.max(cut);
        }
        prop_assert_eq!(from, samples.len());
        let (a, b) = (once.usage(None), pieces.usage(None));
        prop_assert_eq!(a.len(), b.len());
        if let (Some(a), Some(b)) = (a.first(), b.first()) {
            prop_assert!((a.cost_usd - b.cost_usd).abs() < 1e-9, "{} vs {}", a.cost_usd, b.cost_usd);
        }
    }
}

async fn write(store: &Store, t: i64, rows: &[(&Labels, f64)]) {
    let rows: Vec<(Vec<(String, String)>, f64)> = rows
        .iter()
        .map(|(labels, v)| {
            let pairs = labels
                .iter()
                .map(|p| (p.name.to_string(), p.value.to_string()));
            (pairs.collect(), *v)
        })
        .collect();
    store
        .write_local(t, &rows)
        .await
        .expect("queued")
        .wait()
        .await
        .expect("committed");
}

fn read(usage: &MonthUsage, store: &Store, host: Option<&str>, now: i64) -> (Vec<UsageView>, f64) {
    usage.read(store, host, now).expect("reads")
}

/// Over a real store: reads after the first take only what is new, from memory and from persisted
/// chunks, and agree with a fresh ledger that reads the whole month at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fold_forward_and_agree_with_a_full_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        dir.path(),
        StoreOptions {
            checkpoint_interval: std::time::Duration::MAX,
            ..StoreOptions::default()
        },
    )
    .expect("opens");
    let (a, b) = (cost("a", "openai", "gpt"), cost("b", "anthropic", "claude"));
    let (a_in, a_out) = (tokens("a", "gpt", "in"), tokens("a", "gpt", "out"));
    let usage = MonthUsage::default();
    let t = |m: i64| DECEMBER + m * MINUTE;

    // Read in November, these are November's; in December, its baselines.
    write(&store, t(-2), &[(&a, 7.0), (&a_in, 1000.0)]).await;
    let (_, total) = read(&usage, &store, None, t(-1));
    assert_eq!(total, 7.0);
    write(
        &store,
        t(1),
        &[(&a, 8.0), (&a_in, 1500.0), (&a_out, 50.0), (&b, 0.5)],
    )
    .await;
    let (_, total) = read(&usage, &store, None, t(1));
    assert_eq!(total, 1.5);
    store.checkpoint_now().expect("checkpoint");
    write(&store, t(2), &[(&a, 9.0), (&b, 0.25)]).await; // b reset
    write(&store, t(3), &[(&a, 9.5), (&a_in, 1600.0), (&b, 0.75)]).await;
    let (fleet, total) = read(&usage, &store, None, t(3));
    assert_eq!(total, 2.5 + 1.25);
    let gpt = fleet.iter().find(|u| u.model == "gpt").expect("gpt");
    assert_eq!(
        (gpt.tokens_in, gpt.tokens_out, gpt.cost_usd),
        (600.0, 50.0, 2.5)
    );
    let (host_b, cost_b) = read(&usage, &store, Some("b"), t(3));
    assert_eq!((host_b.len(), cost_b), (1, 1.25));

    let fresh = MonthUsage::default();
    assert_eq!(
        read(&fresh, &store, None, t(3)),
        read(&usage, &store, None, t(3))
    );

    // A new month: the baselines are December's last samples (a day back at most: b has none,
    // and no sample in January either, so it is not listed).
    let january = DECEMBER + 31 * 86_400_000;
    write(&store, january - MINUTE, &[(&a, 9.5)]).await;
    write(&store, january + MINUTE, &[(&a, 10.0)]).await;
    let (fleet, total) = read(&usage, &store, None, january + MINUTE);
    assert_eq!(total, 0.5);
    assert_eq!(fleet.len(), 1, "{fleet:?}");
    tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .expect("shutdown");
}
