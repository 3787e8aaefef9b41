//! Atomic batches: several changes that a crash keeps all or none of, a version check that
//! refuses a stale batch, and a bulk load in buffered mode ended by `sync`.
//! `cargo run --example batches`.

use tasklog::store::{Change, Mutation};
use tasklog::{Durability, Error, NewTask, StoreOptions};

fn main() -> tasklog::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tempdir", e))?;
    let store = StoreOptions::new().open(dir.path())?;
    // Create and start a task in one atomic batch.
    let done = store.batch(vec![
        Mutation::submit(NewTask::new("invoice 42").id("inv-42")),
        Mutation::new(
            "inv-42",
            Change::Start {
                owner: None,
                lease_ms: None,
            },
        ),
    ])?;
    println!("inv-42 is {} at version {}", done[1].state, done[1].version);
    // A batch built on an old version is refused whole: nothing is written.
    let stale = store.batch(vec![
        Mutation::new("inv-42", Change::Complete { result: None }).expect_version(1),
    ]);
    match stale {
        Err(Error::Conflict {
            expected, actual, ..
        }) => {
            println!("refused: expected version {expected}, the task is at {actual}")
        }
        other => println!("unexpected: {other:?}"),
    }
    store.close()?;

    // A bulk load: buffered acknowledgements, one fsync at the end.
    let store = StoreOptions::new()
        .durability(Durability::Buffered)
        .open(dir.path())?;
    let rows: Vec<Mutation> = (0..1_000)
        .map(|n| Mutation::submit(NewTask::new(format!("row {n}"))))
        .collect();
    let last = store.write_batch(rows)?;
    store.sync()?;
    println!("1000 rows durable through LSN {last}");
    Ok(())
}
