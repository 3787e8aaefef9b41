//! `POST /v1/admin/backup`: an online backup into the server's configured backup directory,
//! rotated like the scheduled ones. Method: a real server in this process; the backup written
//! over HTTP is restored with the library and compared with the store; without a configured
//! directory the route is refused (409) and writes nothing.

mod support;

use std::sync::Arc;

use serde_json::json;
use support::TestServer;
use tasklog::task::NewTask;
use tasklog_server::{BackupSchedule, ServerOptions};

fn with_backups(dir: &std::path::Path, keep: usize) -> ServerOptions {
    let mut o = ServerOptions::default();
    o.backups = Some(BackupSchedule::new(
        std::time::Duration::from_secs(86_400),
        keep,
        dir.to_path_buf(),
    ));
    o
}

#[test]
fn a_backup_over_http_restores_exactly_and_rotates() {
    let backups = tempfile::tempdir().unwrap();
    let server = TestServer::with_options(with_backups(backups.path(), 2));
    let c = server.client();
    let mut dirs = Vec::new();
    for i in 0..3 {
        server
            .state
            .store()
            .submit(NewTask::new(format!("t{i}")).id(format!("t{i}")))
            .unwrap();
        let r = c.send("POST", "/v1/admin/backup", None, &[]);
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.json();
        assert_eq!(v["tasks"], json!(i + 1));
        assert_eq!(v["lsn"], json!(server.state.store().last_lsn()));
        dirs.push(v["dir"].as_str().unwrap().to_string());
        if i == 2 {
            assert_eq!(v["removed"], json!([dirs[0].clone()]));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let target = backups.path().join("restored");
    let info = tasklog::store::backup::restore(
        Arc::new(tasklog::wal::StdStorage),
        std::path::Path::new(&dirs[2]),
        &target,
    )
    .unwrap();
    assert_eq!(info.tasks, 3);
    let restored = tasklog::StoreOptions::new()
        .read_only(true)
        .open(&target)
        .unwrap();
    let mut ids: Vec<_> = restored
        .all_tasks()
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["t0", "t1", "t2"]);
}

#[test]
fn without_a_backup_directory_the_route_is_refused() {
    let server = TestServer::start();
    let r = server.client().send("POST", "/v1/admin/backup", None, &[]);
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["code"], "backups_not_configured");
    let doc = serde_json::to_value(tasklog_server::openapi_document()).unwrap();
    assert!(doc["paths"]["/v1/admin/backup"]["post"].is_object());
}
