//! Runs tasks with handlers: a kind that succeeds, one that fails once and is retried, and
//! `?` on context calls. `cargo run --example runtime`.

use std::time::Duration;

use serde_json::json;
use tasklog::runtime::{Kind, RetryPolicy, Runtime, RuntimeOptions};
use tasklog::store::StoreOptions;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut rt = Runtime::open(dir.path(), StoreOptions::new(), RuntimeOptions::default())?;
    rt.register(
        "resize",
        Kind::new(|ctx, input| {
            let n = input["images"]
                .as_u64()
                .ok_or("input.images must be a number")?;
            for i in 1..=n {
                ctx.progress((i * 100 / n) as u8, Some("resize"), None)?;
            }
            Ok(json!({ "resized": n }))
        }),
    );
    rt.register(
        "flaky",
        Kind::new(|ctx, _| {
            if ctx.attempt() == 1 {
                return Err("the first attempt fails".into());
            }
            Ok(json!("second time lucky"))
        })
        .retry(RetryPolicy {
            backoff_base_ms: 10,
            ..RetryPolicy::default()
        }),
    );
    rt.start()?;
    let a = rt.submit("resize", json!({ "images": 4 }), 1)?.id;
    let b = rt.submit("flaky", json!(null), 1)?.id;
    rt.wait_idle(Duration::from_secs(10));
    for id in [a, b] {
        let t = rt.store().get(&id)?;
        println!(
            "{id}: {} after {} attempt(s): {:?}",
            t.state, t.attempt, t.result
        );
        for e in rt.store().history(&id)? {
            println!("  {:>3} {}", e.lsn, e.kind);
        }
    }
    rt.shutdown(Duration::from_secs(5))?;
    Ok(())
}
