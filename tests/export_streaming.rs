//! The JSON export streams with bounded memory and stays consistent while the store changes.
//!
//! Method: (1) export 5,000 tasks (about 5 MB) into a writer that records how many tasks had
//! been written (via the progress callback) when the first bytes reached it: a streaming
//! exporter writes long before the last task is read. (2) export while another thread keeps
//! changing and adding tasks, then check the document: `task_count` equals the number of tasks
//! written, and every task agrees with its own history (as many events as its `version`, the
//! last one at its `last_lsn`).

#[path = "export_support.rs"]
mod support;

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tasklog::export::{ExportOptions, export_json};
use tasklog::{NewTask, Store};

struct Probe {
    done: Rc<Cell<u64>>,
    done_at_first_write: Option<u64>,
    bytes: usize,
}

impl Write for Probe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.done_at_first_write.get_or_insert(self.done.get());
        self.bytes += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_document_is_written_while_tasks_are_still_being_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    support::bulk_store(&store, 5_000, 3);
    let done = Rc::new(Cell::new(0));
    let mut probe = Probe {
        done: done.clone(),
        done_at_first_write: None,
        bytes: 0,
    };
    let summary = export_json(&store, &ExportOptions::new(), &mut probe, |d, total| {
        assert_eq!(total, 5_000);
        done.set(d);
    })
    .expect("export");
    assert_eq!(summary.tasks, 5_000);
    assert_eq!(summary.bytes as usize, probe.bytes);
    assert!(probe.bytes > 4 << 20, "{} bytes", probe.bytes);
    let first = probe.done_at_first_write.expect("something was written");
    assert!(
        first < 1_000,
        "first bytes left only after {first} of 5000 tasks were read"
    );
}

#[test]
fn an_export_during_writes_is_consistent_task_by_task() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    support::bulk_store(&store, 2_000, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("t{:06}", fastrand::usize(..2_000));
                let _ = store.progress(&id, fastrand::u8(..=100), None, None);
                store
                    .submit(NewTask::new("late").id(format!("late-{n}")))
                    .expect("submit");
                n += 1;
            }
            n
        })
    };
    let mut out = Vec::new();
    let summary = export_json(&store, &ExportOptions::new(), &mut out, |_, _| {}).expect("export");
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().expect("the writer thread");
    let doc: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    let tasks = doc["tasks"].as_object().expect("tasks");
    assert_eq!(doc["task_count"].as_u64(), Some(tasks.len() as u64));
    assert_eq!(summary.tasks as usize, tasks.len());
    for (id, t) in tasks {
        let history = t["history"].as_array().expect("history");
        assert_eq!(Some(history.len() as u64), t["version"].as_u64(), "{id}");
        assert_eq!(
            history.last().map(|e| &e["lsn"]),
            Some(&t["last_lsn"]),
            "{id}"
        );
    }
    eprintln!(
        "{writes} rounds of writes ran during the export of {} tasks",
        tasks.len()
    );
}
