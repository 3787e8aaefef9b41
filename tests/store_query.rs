//! Goal: prove that `Store::list` and `Store::count` (issue #4) return exactly the tasks a
//! filter describes, in the documented order, and that cursor pagination neither skips nor
//! repeats a task while other tasks are created, updated and removed between pages.
//!
//! Method: a few hundred tasks with seeded-random fields (some imported with chosen creation
//! and update times, many sharing a millisecond so that the id tie-break matters; some
//! submitted and driven through every state) are queried with every filter alone and with
//! hundreds of random combinations. Each answer is compared with an independent brute-force
//! filter and sort over `all_tasks()`. Pagination is checked against the set of tasks that
//! existed and matched during the whole walk.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};
use tasklog::store::{Change, Cursor, Filter, Mutation, Query, SortKey};
use tasklog::task::{Progress, Task, TaskUpdate, Timestamp};
use tasklog::{NewTask, Store, TaskState};

const ROLES: [Option<&str>; 4] = [None, Some("dev"), Some("qa"), Some("ops")];
const PROVIDERS: [Option<&str>; 3] = [None, Some("anthropic"), Some("local")];
const MODELS: [Option<&str>; 3] = [None, Some("big"), Some("small")];
const TAGS: [&str; 5] = ["a", "b", "c", "d", "e"];
const TEAMS: [&str; 3] = ["red", "blue", "green"];
const TITLE_WORDS: [&str; 10] = [
    "Build",
    "deploy",
    "Review",
    "refactor",
    "TEST",
    "Überprüfung",
    "Straße",
    "fix BUG",
    "write Docs",
    "ÉTÉ",
];

fn opt(s: Option<&str>) -> Option<String> {
    s.map(str::to_string)
}

fn pick<T: Copy>(rng: &mut fastrand::Rng, xs: &[T]) -> T {
    xs[rng.usize(..xs.len())]
}

fn random_tags(rng: &mut fastrand::Rng) -> Vec<String> {
    TAGS.iter()
        .filter(|_| rng.u8(..100) < 40)
        .map(|t| t.to_string())
        .collect()
}

fn random_metadata(rng: &mut fastrand::Rng) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    if rng.bool() {
        m.insert("team".into(), json!(pick(rng, &TEAMS)));
    }
    match rng.u8(..4) {
        0 => {}
        1 => {
            // A number stored as text: matched only by the same text.
            m.insert("cost".into(), json!(rng.u8(..5).to_string()));
        }
        _ => {
            m.insert("cost".into(), json!(rng.u8(..5)));
        }
    }
    if rng.bool() {
        m.insert("flag".into(), json!(rng.bool()));
    }
    if rng.u8(..5) == 0 {
        m.insert("note".into(), Value::Null);
    }
    m
}

fn random_title(rng: &mut fastrand::Rng, i: usize) -> String {
    format!(
        "{} {} #{i}",
        pick(rng, &TITLE_WORDS),
        pick(rng, &TITLE_WORDS)
    )
}

fn random_id(rng: &mut fastrand::Rng) -> String {
    format!("{:08x}-{:04x}", rng.u32(..), rng.u16(..))
}

/// A whole task for import, with chosen times.
fn imported_task(rng: &mut fastrand::Rng, i: usize, created: i64, updated: i64) -> Task {
    let state = pick(rng, &TaskState::ALL);
    Task {
        id: random_id(rng),
        title: random_title(rng, i),
        description: if rng.bool() {
            format!("details: {}", pick(rng, &TITLE_WORDS).to_uppercase())
        } else {
            String::new()
        },
        role: opt(pick(rng, &ROLES)),
        state,
        progress: Progress::default(),
        created_at: Timestamp(created),
        updated_at: Timestamp(updated),
        started_at: None,
        completed_at: state.is_terminal().then_some(Timestamp(updated)),
        provider: opt(pick(rng, &PROVIDERS)),
        model: opt(pick(rng, &MODELS)),
        tags: random_tags(rng),
        metadata: random_metadata(rng),
        result: None,
        last_error: None,
        error_count: 0,
        attempt: 1,
        priority: rng.u8(..=10),
        checkpoint: None,
        outputs: Vec::new(),
        lease: None,
        session: 0,
        version: 0,
        last_lsn: 0,
    }
}

fn random_new_task(rng: &mut fastrand::Rng, i: usize) -> NewTask {
    let mut n = NewTask::new(random_title(rng, i)).id(random_id(rng));
    if rng.bool() {
        n = n.description(format!("about {}", pick(rng, &TITLE_WORDS)));
    }
    n.role = opt(pick(rng, &ROLES));
    n.provider = opt(pick(rng, &PROVIDERS));
    n.model = opt(pick(rng, &MODELS));
    n.tags = random_tags(rng);
    n.metadata = random_metadata(rng);
    n
}

/// Builds a store with `imported + submitted` tasks in every state.
fn populate(store: &Store, rng: &mut fastrand::Rng, imported: usize, submitted: usize) {
    let base = Timestamp::now().0 - 10 * 3_600_000;
    let mut muts = Vec::new();
    for i in 0..imported {
        // Groups of tasks share a creation millisecond, so the id tie-break matters.
        let created = base + (i as i64 / 8) * 60_000;
        let updated = created + rng.i64(0..3_600_000);
        let t = imported_task(rng, i, created, updated);
        muts.push(Mutation::new(t.id.clone(), Change::Import(Box::new(t))));
    }
    store.batch(muts).expect("import");
    for i in 0..submitted {
        let t = store
            .submit(random_new_task(rng, imported + i))
            .expect("submit");
        match rng.u8(..6) {
            0 => {}
            1 => {
                store.start(&t.id).unwrap();
            }
            2 => {
                store.start(&t.id).unwrap();
                store.complete(&t.id, Some(json!(i))).unwrap();
            }
            3 => {
                store.start(&t.id).unwrap();
                store.fail(&t.id, "boom").unwrap();
            }
            4 => {
                store.cancel(&t.id, None).unwrap();
            }
            _ => {
                store
                    .update(
                        &t.id,
                        TaskUpdate {
                            add_tags: vec!["e".into()],
                            ..TaskUpdate::default()
                        },
                    )
                    .unwrap();
            }
        }
    }
}

// ----- the independent reference -------------------------------------------------------------

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn ref_meta(have: &Value, want: &Value) -> bool {
    have == want || matches!(want, Value::String(w) if text_of(have) == *w)
}

fn ref_matches(f: &Filter, t: &Task) -> bool {
    let ok_opt = |want: &Option<String>, have: &Option<String>| want.is_none() || want == have;
    let ci = |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
    let range = |t: Timestamp, since: Option<Timestamp>, until: Option<Timestamp>| {
        since.is_none_or(|s| t.0 >= s.0) && until.is_none_or(|u| t.0 < u.0)
    };
    (f.states.is_empty() || f.states.contains(&t.state))
        && ok_opt(&f.role, &t.role)
        && ok_opt(&f.provider, &t.provider)
        && ok_opt(&f.model, &t.model)
        && f.tags.iter().all(|tag| t.tags.iter().any(|x| x == tag))
        && f.metadata
            .iter()
            .all(|(k, v)| t.metadata.get(k).is_some_and(|h| ref_meta(h, v)))
        && f.text
            .as_ref()
            .is_none_or(|n| ci(&t.title, n) || ci(&t.description, n))
        && range(t.created_at, f.created_since, f.created_until)
        && range(t.updated_at, f.updated_since, f.updated_until)
}

fn sort_ms(t: &Task, key: SortKey) -> i64 {
    match key {
        SortKey::Created => t.created_at.0,
        _ => t.updated_at.0,
    }
}

/// Ids of the matching tasks in listing order.
fn reference(all: &[Task], f: &Filter, key: SortKey, descending: bool) -> Vec<String> {
    let mut hits: Vec<&Task> = all.iter().filter(|t| ref_matches(f, t)).collect();
    hits.sort_by(|a, b| (sort_ms(a, key), &a.id).cmp(&(sort_ms(b, key), &b.id)));
    if descending {
        hits.reverse();
    }
    hits.into_iter().map(|t| t.id.clone()).collect()
}

fn ids(tasks: &[Task]) -> Vec<String> {
    tasks.iter().map(|t| t.id.clone()).collect()
}

fn list_all(store: &Store, f: &Filter, key: SortKey, descending: bool) -> Vec<String> {
    let q = Query {
        filter: f.clone(),
        sort: key,
        descending,
        ..Query::default()
    };
    ids(&store.list(&q).unwrap().tasks)
}

fn random_filter(rng: &mut fastrand::Rng, all: &[Task]) -> Filter {
    let mut f = Filter::default();
    let p = |rng: &mut fastrand::Rng| rng.u8(..100) < 30;
    if p(rng) {
        f.states = TaskState::ALL.into_iter().filter(|_| rng.bool()).collect();
    }
    if p(rng) {
        f.role = opt(pick(rng, &ROLES[1..]));
    }
    if p(rng) {
        f.provider = opt(pick(rng, &PROVIDERS[1..]));
    }
    if p(rng) {
        f.model = opt(pick(rng, &MODELS[1..]));
    }
    if p(rng) {
        f.tags = TAGS
            .iter()
            .filter(|_| rng.u8(..100) < 30)
            .map(|t| t.to_string())
            .collect();
    }
    if p(rng) {
        let n = rng.u8(..5);
        let (k, v) = match rng.u8(..7) {
            0 => ("team", json!(pick(rng, &TEAMS))),
            1 => ("cost", json!(n)),
            2 => ("cost", json!(n.to_string())),
            3 => ("flag", json!(if rng.bool() { "true" } else { "false" })),
            4 => ("flag", json!(rng.bool())),
            5 => ("note", json!("abc")),
            _ => ("note", Value::Null),
        };
        f.metadata.push((k.to_string(), v));
    }
    if p(rng) {
        let word = pick(rng, &TITLE_WORDS);
        let chars: Vec<char> = word.chars().collect();
        let start = rng.usize(..chars.len());
        let end = rng.usize(start + 1..=chars.len());
        let piece: String = chars[start..end].iter().collect();
        f.text = Some(if rng.bool() {
            piece.to_uppercase()
        } else {
            piece.to_lowercase()
        });
    }
    let some_time = |rng: &mut fastrand::Rng, created: bool| {
        let t = &all[rng.usize(..all.len())];
        if created { t.created_at } else { t.updated_at }
    };
    if p(rng) {
        f.created_since = Some(some_time(rng, true));
    }
    if p(rng) {
        f.created_until = Some(some_time(rng, true));
    }
    if p(rng) {
        f.updated_since = Some(some_time(rng, false));
    }
    if p(rng) {
        f.updated_until = Some(some_time(rng, false));
    }
    f
}

fn open_populated(seed: u64) -> (tempfile::TempDir, Store, Vec<Task>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    populate(&store, &mut rng, 240, 60);
    let all = store.all_tasks().unwrap();
    assert_eq!(all.len(), 300);
    (dir, store, all)
}

// ----- tests ---------------------------------------------------------------------------------

#[test]
fn every_filter_alone_selects_exactly_the_matching_tasks() {
    let (_dir, store, all) = open_populated(1);
    // The middle task by creation and by update time (not by the map's order, which varies
    // from run to run: the first-created task would make "created since" exclude nothing).
    let middle_by = |key: fn(&Task) -> i64| {
        let mut times: Vec<i64> = all.iter().map(key).collect();
        times.sort_unstable();
        Timestamp(times[times.len() / 2])
    };
    let created_mid = middle_by(|t| t.created_at.0);
    let updated_mid = middle_by(|t| t.updated_at.0);
    let mut cases: Vec<(&str, Filter)> = vec![
        (
            "states any-of",
            Filter {
                states: vec![TaskState::Pending, TaskState::Failed],
                ..Filter::default()
            },
        ),
        (
            "role",
            Filter {
                role: Some("qa".into()),
                ..Filter::default()
            },
        ),
        (
            "provider",
            Filter {
                provider: Some("local".into()),
                ..Filter::default()
            },
        ),
        (
            "model",
            Filter {
                model: Some("big".into()),
                ..Filter::default()
            },
        ),
        (
            "one tag",
            Filter {
                tags: vec!["b".into()],
                ..Filter::default()
            },
        ),
        (
            "all of two tags",
            Filter {
                tags: vec!["a".into(), "c".into()],
                ..Filter::default()
            },
        ),
        (
            "metadata string",
            Filter {
                metadata: vec![("team".into(), json!("blue"))],
                ..Filter::default()
            },
        ),
        (
            "metadata number by its text",
            Filter {
                metadata: vec![("cost".into(), json!("3"))],
                ..Filter::default()
            },
        ),
        (
            "metadata number",
            Filter {
                metadata: vec![("cost".into(), json!(3))],
                ..Filter::default()
            },
        ),
        (
            "metadata bool by its text",
            Filter {
                metadata: vec![("flag".into(), json!("true"))],
                ..Filter::default()
            },
        ),
        (
            "text, ASCII, other case",
            Filter {
                text: Some("rEvIeW".into()),
                ..Filter::default()
            },
        ),
        (
            "text, non-ASCII, other case",
            Filter {
                text: Some("ÜBERPRÜF".into()),
                ..Filter::default()
            },
        ),
        (
            "text in the description",
            Filter {
                text: Some("details".into()),
                ..Filter::default()
            },
        ),
        (
            "created since",
            Filter {
                created_since: Some(created_mid),
                ..Filter::default()
            },
        ),
        (
            "created until",
            Filter {
                created_until: Some(created_mid),
                ..Filter::default()
            },
        ),
        (
            "updated since",
            Filter {
                updated_since: Some(updated_mid),
                ..Filter::default()
            },
        ),
        (
            "updated until",
            Filter {
                updated_until: Some(updated_mid),
                ..Filter::default()
            },
        ),
    ];
    cases.push((
        "all states listed",
        Filter {
            states: TaskState::ALL.to_vec(),
            ..Filter::default()
        },
    ));
    for (name, f) in &cases {
        let want = reference(&all, f, SortKey::Created, false);
        assert!(!want.is_empty(), "{name}: the data set must exercise it");
        if *name != "all states listed" {
            assert!(
                want.len() < all.len(),
                "{name}: filter must exclude something"
            );
        }
        assert_eq!(list_all(&store, f, SortKey::Created, false), want, "{name}");
        assert_eq!(store.count(f).unwrap(), want.len(), "{name}: count");
    }
}

#[test]
fn a_null_metadata_value_is_not_matched_by_arbitrary_text() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .submit(NewTask::new("n").id("null").meta("note", Value::Null))
        .unwrap();
    store
        .submit(NewTask::new("f").id("five").meta("note", json!(5)))
        .unwrap();
    store
        .submit(NewTask::new("s").id("text5").meta("note", json!("5")))
        .unwrap();
    let ids_for = |v: Value| {
        list_all(
            &store,
            &Filter {
                metadata: vec![("note".into(), v)],
                ..Filter::default()
            },
            SortKey::Created,
            false,
        )
    };
    assert_eq!(ids_for(json!("abc")), Vec::<String>::new());
    assert_eq!(ids_for(json!("null")), ["null"]);
    assert_eq!(ids_for(Value::Null), ["null"]);
    let mut five = ids_for(json!("5"));
    five.sort();
    assert_eq!(five, ["five", "text5"]);
    assert_eq!(ids_for(json!(5)), ["five"]);
}

#[test]
fn random_filter_combinations_agree_with_brute_force() {
    let (_dir, store, all) = open_populated(2);
    let mut rng = fastrand::Rng::with_seed(99);
    let mut nonempty = 0;
    let mut multi = 0;
    for i in 0..400 {
        let f = random_filter(&mut rng, &all);
        let key = if rng.bool() {
            SortKey::Created
        } else {
            SortKey::Updated
        };
        let desc = rng.bool();
        let want = reference(&all, &f, key, desc);
        let got = list_all(&store, &f, key, desc);
        assert_eq!(got, want, "case {i}: {f:?} sort {key:?} desc {desc}");
        assert_eq!(
            store.count(&f).unwrap(),
            want.len(),
            "case {i}: count {f:?}"
        );
        if !want.is_empty() {
            nonempty += 1;
            let set = [
                !f.states.is_empty(),
                f.role.is_some(),
                f.provider.is_some(),
                f.model.is_some(),
                !f.tags.is_empty(),
                !f.metadata.is_empty(),
                f.text.is_some(),
                f.created_since.is_some() || f.created_until.is_some(),
                f.updated_since.is_some() || f.updated_until.is_some(),
            ];
            if set.iter().filter(|x| **x).count() >= 2 {
                multi += 1;
            }
        }
    }
    // The generator must produce informative cases, not only empty answers.
    assert!(nonempty > 150, "only {nonempty} non-empty answers");
    assert!(
        multi > 50,
        "only {multi} non-empty answers to combined filters"
    );
}

#[test]
fn sorting_by_created_and_updated_in_both_directions() {
    let (_dir, store, all) = open_populated(3);
    let f = Filter::default();
    for key in [SortKey::Created, SortKey::Updated] {
        for desc in [false, true] {
            let got = list_all(&store, &f, key, desc);
            assert_eq!(got, reference(&all, &f, key, desc), "{key:?} desc={desc}");
        }
    }
    // The default is oldest first by creation.
    let got = ids(&store.list(Query::default()).unwrap().tasks);
    assert_eq!(got, reference(&all, &f, SortKey::Created, false));
    // Updated order differs from created order here, so the key is really used.
    assert_ne!(
        reference(&all, &f, SortKey::Created, false),
        reference(&all, &f, SortKey::Updated, false)
    );
}

#[test]
fn limit_and_offset_cut_the_ordered_list() {
    let (_dir, store, all) = open_populated(4);
    let f = Filter {
        states: vec![TaskState::Pending, TaskState::Completed, TaskState::Failed],
        ..Filter::default()
    };
    for key in [SortKey::Created, SortKey::Updated] {
        for desc in [false, true] {
            let full = reference(&all, &f, key, desc);
            let n = full.len();
            assert!(n > 60);
            for (offset, limit) in [
                (0, 1),
                (0, 10),
                (5, 10),
                (n - 3, 10),
                (n, 5),
                (n + 5, 5),
                (7, 0),
                (0, n),
                (1, n),
            ] {
                let q = Query {
                    filter: f.clone(),
                    sort: key,
                    descending: desc,
                    limit: Some(limit),
                    offset,
                    after: None,
                };
                let page = store.list(&q).unwrap();
                let want: Vec<String> = full.iter().skip(offset).take(limit).cloned().collect();
                assert_eq!(ids(&page.tasks), want, "{key:?} {desc} {offset}+{limit}");
                if !page.tasks.is_empty() && offset + page.tasks.len() < n {
                    let c = page.next_cursor.as_ref().expect("more remain: a cursor");
                    let last = page.tasks.last().expect("non-empty page");
                    assert_eq!(c.id, last.id);
                    assert_eq!(c.at_ms, sort_ms(last, key));
                }
            }
            // Offset without a limit.
            let q = Query {
                filter: f.clone(),
                sort: key,
                descending: desc,
                offset: 11,
                ..Query::default()
            };
            assert_eq!(ids(&store.list(&q).unwrap().tasks), full[11..].to_vec());
        }
    }
}

#[test]
fn cursor_pages_chain_to_the_whole_list() {
    let (_dir, store, all) = open_populated(5);
    let f = Filter {
        tags: vec!["a".into()],
        ..Filter::default()
    };
    for key in [SortKey::Created, SortKey::Updated] {
        for desc in [false, true] {
            for size in [1, 7, 50] {
                let mut got = Vec::new();
                let mut after = None;
                loop {
                    let q = Query {
                        filter: f.clone(),
                        sort: key,
                        descending: desc,
                        limit: Some(size),
                        after: after.take(),
                        ..Query::default()
                    };
                    let page = store.list(&q).unwrap();
                    assert!(page.tasks.len() <= size);
                    got.extend(ids(&page.tasks));
                    match page.next_cursor {
                        // Through its text form, as a CLI or HTTP client would carry it.
                        Some(c) => after = Some(Cursor::decode(&c.encode()).unwrap()),
                        None => break,
                    }
                    assert!(got.len() <= all.len(), "pagination does not end");
                }
                assert_eq!(got, reference(&all, &f, key, desc), "{key:?} {desc} {size}");
            }
        }
    }
}

#[test]
fn cursor_text_form_round_trips() {
    for c in [
        Cursor {
            at_ms: 1_700_000_000_123,
            id: "plain".into(),
        },
        Cursor {
            at_ms: -5,
            id: "with:colons:inside".into(),
        },
    ] {
        assert_eq!(Cursor::decode(&c.encode()), Some(c.clone()));
    }
    assert_eq!(Cursor::decode("nonsense"), None);
    assert_eq!(Cursor::decode("x:id"), None);
}

/// Walks a filtered listing page by page while tasks are created, updated (some stop or start
/// matching) and removed between pages.
fn paginate_while_changing(seed: u64, descending: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    populate(&store, &mut rng, 240, 40);
    let f = Filter {
        tags: vec!["b".into()],
        ..Filter::default()
    };
    let matching = |store: &Store| -> HashSet<String> {
        store
            .all_tasks()
            .unwrap()
            .into_iter()
            .filter(|t| ref_matches(&f, t))
            .map(|t| t.id)
            .collect()
    };
    let initial = matching(&store);
    assert!(initial.len() > 60, "{} tasks match", initial.len());
    let mut disturbed: HashSet<String> = HashSet::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut after: Option<Cursor> = None;
    let mut pages = 0;
    let mut created = 0;
    loop {
        let q = Query {
            filter: f.clone(),
            sort: SortKey::Created,
            descending,
            limit: Some(9),
            after: after.take(),
            ..Query::default()
        };
        let page = store.list(&q).unwrap();
        pages += 1;
        for t in &page.tasks {
            assert!(ref_matches(&f, t), "a returned task must match now");
            *seen.entry(t.id.clone()).or_default() += 1;
        }
        let Some(c) = page.next_cursor else { break };
        after = Some(c);
        assert!(pages < 1000, "pagination does not end");
        // Change things between pages.
        let live: Vec<Task> = store.all_tasks().unwrap();
        for _ in 0..3 {
            let mut n = random_new_task(&mut rng, 10_000 + created);
            n.tags.push("b".into());
            store.submit(n).unwrap();
            created += 1;
        }
        for _ in 0..4 {
            let t = &live[rng.usize(..live.len())];
            let before = ref_matches(&f, t);
            let u = match rng.u8(..3) {
                0 => TaskUpdate {
                    title: Some(format!("renamed {}", rng.u32(..))),
                    ..TaskUpdate::default()
                },
                1 => TaskUpdate {
                    remove_tags: vec!["b".into()],
                    ..TaskUpdate::default()
                },
                _ => TaskUpdate {
                    add_tags: vec!["b".into()],
                    ..TaskUpdate::default()
                },
            };
            let after_update = store.update(&t.id, u).unwrap();
            if before != ref_matches(&f, &after_update) {
                disturbed.insert(t.id.clone());
            }
        }
        for _ in 0..2 {
            let t = &live[rng.usize(..live.len())];
            if store.remove(&t.id, Some("test")).is_ok() {
                disturbed.insert(t.id.clone());
            }
        }
    }
    assert!(pages > 10, "only {pages} pages");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "returned more than once: {twice:?}");
    let stable: Vec<&String> = initial.difference(&disturbed).collect();
    assert!(stable.len() > 40);
    let missed: Vec<&&String> = stable
        .iter()
        .filter(|id| !seen.contains_key(**id))
        .collect();
    assert!(
        missed.is_empty(),
        "skipped although present and matching throughout: {missed:?}"
    );
    assert!(!disturbed.is_empty(), "the walk must actually be disturbed");
}

#[test]
fn pagination_is_stable_while_tasks_change_ascending() {
    paginate_while_changing(6, false);
}

#[test]
fn pagination_is_stable_while_tasks_change_descending() {
    paginate_while_changing(7, true);
}

#[test]
fn removed_tasks_leave_listings_and_counts() {
    let (_dir, store, all) = open_populated(8);
    let gone: Vec<&Task> = all.iter().step_by(3).collect();
    for t in &gone {
        store.remove(&t.id, None).unwrap();
    }
    let rest: Vec<Task> = all
        .iter()
        .filter(|t| !gone.iter().any(|g| g.id == t.id))
        .cloned()
        .collect();
    let f = Filter::default();
    assert_eq!(
        list_all(&store, &f, SortKey::Created, false),
        reference(&rest, &f, SortKey::Created, false)
    );
    assert_eq!(store.count(&f).unwrap(), rest.len());
}

#[test]
fn text_search_edges() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .submit(NewTask::new("Deploy the API").id("ascii"))
        .unwrap();
    store
        .submit(
            NewTask::new("Überprüfung")
                .id("unicode")
                .description("Straße reparieren"),
        )
        .unwrap();
    store.submit(NewTask::new("ab").id("short")).unwrap();
    let hits = |needle: &str| {
        let mut v = list_all(
            &store,
            &Filter {
                text: Some(needle.into()),
                ..Filter::default()
            },
            SortKey::Created,
            false,
        );
        v.sort();
        v
    };
    assert_eq!(hits(""), ["ascii", "short", "unicode"]);
    assert_eq!(hits("api"), ["ascii"]); // at the very end
    assert_eq!(hits("DEPLOY THE API"), ["ascii"]); // the whole title
    assert_eq!(hits("deploy the api!"), Vec::<String>::new()); // longer than the title
    assert_eq!(hits("AB"), ["short"]);
    assert_eq!(hits("b"), ["short", "unicode"]); // "Überprüfung"
    assert_eq!(hits("a"), ["ascii", "short", "unicode"]); // "reparieren" in a description
    assert_eq!(hits("ÜBERPRÜFUNG"), ["unicode"]);
    assert_eq!(hits("STRASSE"), Vec::<String>::new()); // lowercase, not case folding
    assert_eq!(hits("straße"), ["unicode"]);
    assert_eq!(hits("pi "), Vec::<String>::new());
}
