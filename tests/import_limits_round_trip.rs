//! Whatever the store accepts exports and re-imports to the same state, at the edge of every
//! limit in `tasklog::task::limits`.
//!
//! Method: a property test builds stores whose tasks sit at the edges of each limit — times at
//! 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z (as task fields, checkpoint and output
//! times, and history event times), free-form values nested exactly `JSON_DEPTH_MAX` deep,
//! 256-byte ids, percent 100, priority 10, counters at `u32::MAX`, extreme numbers and awkward
//! strings — through the library's own write path (`Change::Import` for whole tasks,
//! `Change::Historical` for events with chosen times). It exports the store, imports the
//! document into an empty store, exports that, and requires the two documents to be identical
//! (`exported_at` aside). One step past each limit must be refused by the store itself (the
//! same check every entry uses: the library, the CLI and the HTTP API), so nothing that could
//! not come back is ever stored.

#[path = "export_support.rs"]
mod support;

use proptest::prelude::*;
use serde_json::{Value, json};
use tasklog::export::{
    ImportOptions, SpooledDocument, import_json, import_json_spooled, validate_import_spooled,
};
use tasklog::store::{Change, Mutation};
use tasklog::task::limits::{JSON_DEPTH_MAX, TASK_ID_BYTES_MAX, TIME_MS_MAX, TIME_MS_MIN};
use tasklog::task::{EventKind, Task, Timestamp};
use tasklog::{Error, NewTask, Store};

const TIMES: [i64; 6] = [
    TIME_MS_MIN,
    TIME_MS_MIN + 1,
    -1,
    0,
    TIME_MS_MAX - 1,
    TIME_MS_MAX,
];

/// A value nested `depth` levels (arrays or objects alternately), holding `leaf`.
fn nested(depth: usize, leaf: Value) -> Value {
    let mut v = leaf;
    for level in 0..depth {
        v = if level % 2 == 0 {
            json!([v])
        } else {
            json!({ "k": v })
        };
    }
    v
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(f64::MAX)),
        Just(json!(f64::MIN)),
        Just(json!(f64::MIN_POSITIVE)),
        Just(json!(5e-324)),
        Just(json!(-0.0)),
        Just(json!(0.1)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(null)),
        Just(json!("\u{0}\u{1f}\u{7f}\u{2028}\"\\/é😀")),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

/// Text that is never blank: it is also the title, and the store refuses a
/// title of only white space (CI drew `" "` once).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{1,16}".prop_filter("a title needs a non-space character", |s| {
            !s.trim().is_empty()
        }),
        Just("tab\there\nnewline \"quoted\" \\ \u{0}".to_string()),
    ]
}

/// One task at the edges, written as a whole (`imported` event).
#[derive(Debug, Clone)]
struct Spec {
    times: [i64; 6],
    meta_depth: usize,
    result_depth: usize,
    data_depth: usize,
    leaf: Value,
    title: String,
    state: u8,
    edges: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    let time = proptest::sample::select(TIMES.to_vec());
    (
        [
            time.clone(),
            time.clone(),
            time.clone(),
            time.clone(),
            time.clone(),
            time,
        ],
        prop_oneof![Just(0usize), Just(1), Just(JSON_DEPTH_MAX - 1)],
        prop_oneof![Just(0usize), Just(JSON_DEPTH_MAX)],
        prop_oneof![Just(0usize), Just(JSON_DEPTH_MAX)],
        leaf(),
        text(),
        0u8..5,
        any::<bool>(),
    )
        .prop_map(
            |(times, meta_depth, result_depth, data_depth, leaf, title, state, edges)| Spec {
                times,
                meta_depth,
                result_depth,
                data_depth,
                leaf,
                title,
                state,
                edges,
            },
        )
}

/// A task of the given spec, read from JSON the way an API client would send it.
fn task_of(s: &Spec) -> Task {
    let t = |i: usize| Timestamp(s.times[i]).to_rfc3339();
    let state = ["pending", "running", "completed", "failed", "cancelled"][usize::from(s.state)];
    let big = if s.edges { u32::MAX } else { 1 };
    serde_json::from_value(json!({
        "id": "", "title": s.title, "description": s.title, "role": s.title, "state": state,
        "progress": {"percent": if s.edges { 100 } else { 0 }, "step": s.title, "message": null},
        "created_at": t(0), "updated_at": t(1), "started_at": t(2), "completed_at": t(3),
        "provider": null, "model": s.title, "tags": [s.title],
        "metadata": {"deep": nested(s.meta_depth, s.leaf.clone()), "n": s.leaf},
        "result": nested(s.result_depth, s.leaf.clone()), "last_error": s.title,
        "error_count": big, "attempt": big, "priority": if s.edges { 10 } else { 0 },
        "checkpoint": {"name": s.title, "progress": if s.edges { 100 } else { 0 },
                       "data": nested(s.data_depth, s.leaf.clone()), "at": t(4)},
        "outputs": [{"kind": "stdout", "content": s.title, "at": t(5), "mime": s.title}],
        "lease": null, "version": 0, "last_lsn": 0
    }))
    .expect("a task at the edges deserializes")
}

/// An id of exactly `TASK_ID_BYTES_MAX` bytes, multi-byte characters included.
fn long_id(n: usize) -> String {
    let mut id = format!("{n}-é-");
    while id.len() < TASK_ID_BYTES_MAX {
        id.push('x');
    }
    id
}

fn fill(store: &Store, specs: &[Spec]) {
    for (n, s) in specs.iter().enumerate() {
        let id = if s.edges { long_id(n) } else { format!("t{n}") };
        store
            .apply(Mutation::new(&id, Change::Import(Box::new(task_of(s)))))
            .expect("a task at the edges is accepted");
        // And a task whose history holds events at the edge times.
        let hid = format!("h{n}");
        let at = |i: usize| Timestamp(s.times[i]);
        store
            .submit(
                NewTask::new(s.title.clone())
                    .id(&hid)
                    .meta("deep", nested(s.meta_depth, s.leaf.clone())),
            )
            .expect("submit");
        let events = [
            EventKind::Started {
                owner: Some(s.title.clone()),
                lease_expires_at: Some(at(0)),
                session: 0,
            },
            EventKind::Progress {
                percent: 100,
                step: None,
                message: Some(s.title.clone()),
            },
            EventKind::Checkpoint {
                name: s.title.clone(),
                progress: 100,
                data: nested(s.data_depth, s.leaf.clone()),
            },
        ];
        for (i, kind) in events.into_iter().enumerate() {
            let change = Change::Historical {
                kind: Box::new(kind),
                at: at(i + 1),
            };
            store
                .apply(Mutation::new(&hid, change).actor(s.title.clone()))
                .expect("an event at the edges is accepted");
        }
    }
}

fn round_trip(specs: &[Spec]) -> Result<(), TestCaseError> {
    let dir_a = tempfile::tempdir().expect("temp dir");
    let dir_b = tempfile::tempdir().expect("temp dir");
    let a = Store::open(dir_a.path()).expect("open a");
    fill(&a, specs);
    let first = support::export_string(&a, true);
    let b = Store::open(dir_b.path()).expect("open b");
    import_json(
        &b,
        first.as_bytes(),
        "edges",
        &ImportOptions::new(),
        |_, _| {},
    )
    .map_err(|e| TestCaseError::fail(format!("re-import refused: {e}")))?;
    let second = support::export_string(&b, true);
    prop_assert_eq!(
        support::blank_exported_at(&first),
        support::blank_exported_at(&second)
    );
    // What `tasklog import` runs: the document validated once, its tasks kept encoded in a
    // validated copy, and the import decoding that copy: the edges survive it too.
    let dir_c = tempfile::tempdir().expect("temp dir");
    let c = Store::open(dir_c.path()).expect("open c");
    let document = SpooledDocument::read_from(first.as_bytes(), "edges").expect("spool");
    validate_import_spooled(&document, "edges")
        .map_err(|e| TestCaseError::fail(format!("validation refused: {e}")))?;
    import_json_spooled(&c, &document, "edges", &ImportOptions::new(), |_, _| {})
        .map_err(|e| TestCaseError::fail(format!("import from the validated copy refused: {e}")))?;
    let third = support::export_string(&c, true);
    prop_assert_eq!(
        support::blank_exported_at(&first),
        support::blank_exported_at(&third)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn stores_at_every_limit_export_and_reimport_identically(
        specs in proptest::collection::vec(spec(), 1..4)
    ) {
        round_trip(&specs)?;
    }
}

#[test]
fn a_string_of_exactly_the_limit_round_trips() {
    let dir_a = tempfile::tempdir().expect("temp dir");
    let dir_b = tempfile::tempdir().expect("temp dir");
    let a = Store::open(dir_a.path()).expect("open a");
    let big = "é".repeat(tasklog::task::limits::TEXT_BYTES_MAX / 2);
    a.submit(NewTask::new("t").id("big").description(big.clone()))
        .expect("a string of exactly the limit is accepted");
    let first = support::export_string(&a, true);
    let b = Store::open(dir_b.path()).expect("open b");
    import_json(
        &b,
        first.as_bytes(),
        "big",
        &ImportOptions::new(),
        |_, _| {},
    )
    .expect("and imported back");
    assert_eq!(b.get("big").expect("get").description, big);
    assert_eq!(
        support::blank_exported_at(&first),
        support::blank_exported_at(&support::export_string(&b, true))
    );
}

/// The store's own check, the one every entry goes through.
fn refused(store: &Store, m: Mutation, field: &str) {
    match store.apply(m) {
        Err(Error::InvalidInput { at, reason }) => {
            let at = at.unwrap_or_default();
            assert!(at.ends_with(field), "{at}: {reason} (expected {field})");
        }
        other => panic!("{field}: expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn one_step_past_each_limit_is_refused_by_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let spec = Spec {
        times: [0; 6],
        meta_depth: 0,
        result_depth: 0,
        data_depth: 0,
        leaf: json!(1),
        title: "t".into(),
        state: 1,
        edges: false,
    };
    let import = |edit: &dyn Fn(&mut Task)| {
        let mut t = task_of(&spec);
        edit(&mut t);
        Mutation::new("x", Change::Import(Box::new(t)))
    };
    let late = Timestamp(TIME_MS_MAX + 1);
    let early = Timestamp(TIME_MS_MIN - 1);
    refused(&store, import(&|t| t.created_at = late), "created_at");
    refused(&store, import(&|t| t.updated_at = early), "updated_at");
    refused(
        &store,
        import(&|t| {
            if let Some(c) = t.checkpoint.as_mut() {
                c.at = late;
            }
        }),
        "checkpoint.at",
    );
    refused(
        &store,
        import(&|t| {
            if let Some(o) = t.outputs.first_mut() {
                o.at = early;
            }
        }),
        "outputs[0].at",
    );
    refused(
        &store,
        import(&|t| t.result = Some(Box::new(nested(JSON_DEPTH_MAX + 1, json!(1))))),
        "result",
    );
    refused(
        &store,
        import(&|t| {
            t.metadata
                .insert("k".into(), nested(JSON_DEPTH_MAX, json!(1)));
        }),
        "metadata.k",
    );
    refused(
        &store,
        import(&|t| t.progress.percent = 101),
        "progress.percent",
    );
    let too_long = "x".repeat(tasklog::task::limits::TEXT_BYTES_MAX + 1);
    refused(
        &store,
        import(&|t| t.description = too_long.clone()),
        "description",
    );
    refused(
        &store,
        Mutation::submit(
            NewTask::new("t")
                .id("m")
                .meta("k", nested(JSON_DEPTH_MAX, json!(1))),
        ),
        "metadata.k",
    );
    store.submit(NewTask::new("t").id("r")).expect("submit");
    store.start("r").expect("start");
    let historical = |kind: EventKind, at: Timestamp| {
        Mutation::new(
            "r",
            Change::Historical {
                kind: Box::new(kind),
                at,
            },
        )
    };
    let progress = |percent: u8| EventKind::Progress {
        percent,
        step: None,
        message: None,
    };
    refused(&store, historical(progress(255), Timestamp(0)), "percent");
    refused(&store, historical(progress(1), late), "at");
    refused(
        &store,
        Mutation::new(
            "r",
            Change::Complete {
                result: Some(nested(JSON_DEPTH_MAX + 1, json!(1))),
            },
        ),
        "result",
    );
    refused(
        &store,
        Mutation::new(
            "r",
            Change::Checkpoint {
                name: "c".into(),
                data: nested(JSON_DEPTH_MAX + 1, json!(1)),
                progress: None,
            },
        ),
        "data",
    );
    refused(
        &store,
        Mutation::new(
            long_id(0).replace('x', "xy"),
            Change::Import(Box::new(task_of(&spec))),
        ),
        "id",
    );
}
