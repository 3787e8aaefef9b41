//! Model-based test of the store: random sequences of operations (valid and invalid, single and
//! batched), random snapshots and reopenings, checked step by step against a plain in-memory
//! model of the state machine. After every step the outcome (Ok, or which error) must agree,
//! and after every reopen every task, its history (kind, from, to) and the removed tasks'
//! histories must be identical to the model's.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tasklog::Error;
use tasklog::store::{Change, Mutation, Store, StoreOptions};
use tasklog::task::{NewTask, TaskState};

#[derive(Clone, Debug)]
enum Op {
    Submit { id: u8, request: Option<u8> },
    Start(u8),
    Progress(u8, u8),
    Checkpoint(u8),
    Complete(u8),
    Fail(u8),
    Cancel(u8),
    Requeue(u8),
    Retry(u8),
    Remove(u8),
    WrongVersion(u8),
    Batch(Vec<Op>),
    Snapshot,
    Reopen,
}

fn single_op() -> impl Strategy<Value = Op> {
    let id = 0u8..6;
    prop_oneof![
        3 => (id.clone(), proptest::option::of(0u8..3)).prop_map(|(id, request)| Op::Submit { id, request }),
        3 => id.clone().prop_map(Op::Start),
        2 => (id.clone(), 0u8..=120).prop_map(|(i, p)| Op::Progress(i, p)),
        1 => id.clone().prop_map(Op::Checkpoint),
        2 => id.clone().prop_map(Op::Complete),
        2 => id.clone().prop_map(Op::Fail),
        1 => id.clone().prop_map(Op::Cancel),
        1 => id.clone().prop_map(Op::Requeue),
        2 => id.clone().prop_map(Op::Retry),
        1 => id.clone().prop_map(Op::Remove),
        1 => id.prop_map(Op::WrongVersion),
    ]
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => single_op(),
        2 => proptest::collection::vec(single_op(), 1..4).prop_map(Op::Batch),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Reopen),
    ]
}

/// The model's view of a task.
#[derive(Clone, Debug, PartialEq)]
struct MTask {
    state: TaskState,
    attempt: u32,
    error_count: u32,
    version: u64,
    progress: u8,
}

/// One history entry as the model sees it: (kind, from, to).
type Step = (String, Option<TaskState>, Option<TaskState>);

#[derive(Clone, Debug, Default)]
struct Model {
    tasks: BTreeMap<String, MTask>,
    histories: BTreeMap<String, Vec<Step>>,
    requests: BTreeMap<String, String>,
}

/// What kind of outcome an operation had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    NotFound,
    Exists,
    Invalid,
    Conflict,
    BadInput,
}

fn outcome_of(r: &Result<impl Sized, Error>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(Error::NotFound { .. }) => Outcome::NotFound,
        Err(Error::AlreadyExists { .. }) => Outcome::Exists,
        Err(Error::InvalidTransition { .. }) => Outcome::Invalid,
        Err(Error::Conflict { .. }) => Outcome::Conflict,
        Err(Error::InvalidInput { .. }) => Outcome::BadInput,
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

fn tid(i: u8) -> String {
    format!("task-{i}")
}

fn mutation(op: &Op, model: &Model) -> Mutation {
    match op {
        Op::Submit { id, request } => {
            let mut n = NewTask::new(format!("title {id}")).id(tid(*id));
            if let Some(r) = request {
                n = n.request_id(format!("req-{r}"));
            }
            Mutation::submit(n)
        }
        Op::Start(i) => Mutation::new(
            tid(*i),
            Change::Start {
                owner: None,
                lease_ms: None,
            },
        ),
        Op::Progress(i, p) => Mutation::new(
            tid(*i),
            Change::Progress {
                percent: *p,
                step: None,
                message: None,
            },
        ),
        Op::Checkpoint(i) => Mutation::new(
            tid(*i),
            Change::Checkpoint {
                name: "cp".into(),
                data: serde_json::json!({"i": i}),
                progress: None,
            },
        ),
        Op::Complete(i) => Mutation::new(
            tid(*i),
            Change::Complete {
                result: Some(serde_json::json!(i)),
            },
        ),
        Op::Fail(i) => Mutation::new(
            tid(*i),
            Change::Fail {
                error: format!("boom {i}"),
            },
        ),
        Op::Cancel(i) => Mutation::new(tid(*i), Change::Cancel { reason: None }),
        Op::Requeue(i) => Mutation::new(tid(*i), Change::Requeue { reason: None }),
        Op::Retry(i) => Mutation::new(tid(*i), Change::Retry),
        Op::Remove(i) => Mutation::new(tid(*i), Change::Remove { reason: None }),
        Op::WrongVersion(i) => {
            let v = model.tasks.get(&tid(*i)).map_or(0, |t| t.version);
            Mutation::new(
                tid(*i),
                Change::Progress {
                    percent: 1,
                    step: None,
                    message: None,
                },
            )
            .expect_version(v + 7)
        }
        Op::Batch(_) | Op::Snapshot | Op::Reopen => unreachable!("not a single mutation"),
    }
}

impl Model {
    /// Applies one mutation to the model; returns its outcome (and changes nothing on error).
    fn apply(&mut self, op: &Op) -> Outcome {
        use TaskState::*;
        let (id, kind, to): (String, &str, Option<TaskState>) = match op {
            Op::Submit { id, request } => {
                if let Some(r) = request
                    && let Some(earlier) = self.requests.get(&format!("req-{r}"))
                {
                    // A repeated submit writes nothing; its task may have been removed since.
                    return if self.tasks.contains_key(earlier) {
                        Outcome::Ok
                    } else {
                        Outcome::NotFound
                    };
                }
                let id = tid(*id);
                if self.tasks.contains_key(&id) {
                    return Outcome::Exists;
                }
                if let Some(r) = request {
                    self.requests.insert(format!("req-{r}"), id.clone());
                }
                self.tasks.insert(
                    id.clone(),
                    MTask {
                        state: Pending,
                        attempt: 1,
                        error_count: 0,
                        version: 1,
                        progress: 0,
                    },
                );
                self.histories.entry(id.clone()).or_default().push((
                    "created".into(),
                    None,
                    Some(Pending),
                ));
                return Outcome::Ok;
            }
            // The version is checked first, whether the task exists or not.
            Op::WrongVersion(_) => return Outcome::Conflict,
            Op::Start(i) => (tid(*i), "started", Some(Running)),
            Op::Progress(i, _) | Op::Checkpoint(i) => (
                tid(*i),
                if matches!(op, Op::Progress(..)) {
                    "progress"
                } else {
                    "checkpoint"
                },
                None,
            ),
            Op::Complete(i) => (tid(*i), "completed", Some(Completed)),
            Op::Fail(i) => (tid(*i), "failed", Some(Failed)),
            Op::Cancel(i) => (tid(*i), "cancelled", Some(Cancelled)),
            Op::Requeue(i) => (tid(*i), "requeued", Some(Pending)),
            Op::Retry(i) => (tid(*i), "retried", Some(Pending)),
            Op::Remove(i) => (tid(*i), "removed", None),
            _ => unreachable!(),
        };
        // The store checks the input itself before looking at the task.
        if let Op::Progress(_, p) = op
            && *p > 100
        {
            return Outcome::BadInput;
        }
        let Some(t) = self.tasks.get(&id).cloned() else {
            return Outcome::NotFound;
        };
        let from = t.state;
        let allowed = match kind {
            "progress" | "checkpoint" => from == Running,
            "removed" => true,
            "retried" => matches!(from, Failed | Cancelled),
            "requeued" => from == Running,
            _ => from.can_move_to(to.unwrap_or(from)),
        };
        if !allowed {
            return Outcome::Invalid;
        }
        let history = self.histories.entry(id.clone()).or_default();
        if kind == "removed" {
            history.push(("removed".into(), Some(from), None));
            self.tasks.remove(&id);
            return Outcome::Ok;
        }
        let mut next = t;
        next.version += 1;
        match op {
            Op::Progress(_, p) => next.progress = *p,
            Op::Complete(_) => next.progress = 100,
            Op::Fail(_) => next.error_count += 1,
            Op::Retry(_) => {
                next.attempt += 1;
                next.progress = 0;
            }
            _ => {}
        }
        next.state = to.unwrap_or(from);
        history.push((kind.into(), Some(from), Some(next.state)));
        self.tasks.insert(id, next);
        Outcome::Ok
    }
}

fn check_equal(store: &Store, model: &Model) {
    let mut ids: Vec<String> = store
        .all_tasks()
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    ids.sort();
    let model_ids: Vec<String> = model.tasks.keys().cloned().collect();
    assert_eq!(ids, model_ids, "live task ids");
    for (id, m) in &model.tasks {
        let t = store.get(id).unwrap();
        let got = MTask {
            state: t.state,
            attempt: t.attempt,
            error_count: t.error_count,
            version: t.version,
            progress: t.progress.percent,
        };
        assert_eq!(&got, m, "task {id}");
    }
    for (id, h) in &model.histories {
        let got: Vec<Step> = store
            .history(id)
            .unwrap()
            .into_iter()
            .map(|e| (e.kind.to_string(), e.from, e.to))
            .collect();
        assert_eq!(&got, h, "history of {id}");
    }
}

fn open(dir: &std::path::Path) -> Store {
    StoreOptions::new()
        .snapshot_every_records(0)
        .segment_bytes_max(4096)
        .open(dir)
        .unwrap()
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut model = Model::default();
    for op in &ops {
        match op {
            Op::Snapshot => {
                store.snapshot().unwrap();
            }
            Op::Reopen => {
                store.close().unwrap();
                drop(store);
                store = open(dir.path());
                check_equal(&store, &model);
            }
            Op::Batch(inner) => {
                let muts: Vec<Mutation> = inner.iter().map(|o| mutation(o, &model)).collect();
                let mut trial = model.clone();
                let expected = inner
                    .iter()
                    .map(|o| trial.apply(o))
                    .find(|o| *o != Outcome::Ok)
                    .unwrap_or(Outcome::Ok);
                // Both batch paths: with results, and the bulk path without them.
                let got = if inner.len() % 2 == 0 {
                    outcome_of(&store.batch(muts))
                } else {
                    outcome_of(&store.write_batch(muts))
                };
                assert_eq!(got, expected, "batch {inner:?}");
                if expected == Outcome::Ok {
                    model = trial;
                }
            }
            single => {
                let m = mutation(single, &model);
                let expected = model.apply(single);
                let got = outcome_of(&store.apply(m));
                assert_eq!(got, expected, "op {single:?}");
            }
        }
    }
    check_equal(&store, &model);
    store.close().unwrap();
    drop(store);
    let store = open(dir.path());
    check_equal(&store, &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(any_op(), 1..60)) {
        run(ops);
    }
}
