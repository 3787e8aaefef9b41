//! Builds queries, pages through a listing with its cursor, counts with the same query, and
//! reads several figures from one consistent view. `cargo run --example queries`.

use tasklog::{Filter, NewTask, Query, Store, TaskState};

fn main() -> tasklog::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| tasklog::Error::io("create", "tempdir", e))?;
    let store = Store::open(dir.path())?;
    for n in 0..25 {
        let t = store.submit(
            NewTask::new(format!("report {n}"))
                .tag(if n % 2 == 0 { "even" } else { "odd" })
                .role("reporter"),
        )?;
        if n % 5 == 0 {
            store.start(&t.id)?;
            store.fail(&t.id, "source unavailable")?;
        }
    }
    // Page through the pending even reports, ten at a time.
    let pending_even = Query::new().state(TaskState::Pending).tag("even").limit(10);
    let mut page = store.list(&pending_even)?;
    let mut pages = 1;
    while let Some(cursor) = page.next_cursor.clone() {
        page = store.list(pending_even.clone().after(cursor))?;
        pages += 1;
    }
    println!(
        "{} pending even reports, {pages} page(s)",
        store.count(&pending_even)?
    );
    // A plain Filter works as well.
    let failed = Filter::new().state(TaskState::Failed).role("reporter");
    // One view: the count, the listing and the statistics agree on one LSN.
    let view = store.read()?;
    println!(
        "at LSN {}: {} failed of {} tasks ({} listed)",
        view.lsn(),
        view.count(&failed)?,
        view.stats(None)?.total,
        view.list(&failed)?.tasks.len()
    );
    Ok(())
}
