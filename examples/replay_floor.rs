//! What a log open costs beyond reading its frames (issue #20's "open ≤ 3x the raw replay"):
//! times, on the log of a store directory (`bulk_store DIR 200000 --batch`), three passes:
//! a replay that only walks the frames (header, CRC, batch checks), the same replay decoding
//! every event into its typed form and dropping it, and a read-only `Store` open, which also
//! applies every event. Usage: `replay_floor DIR [ROUNDS]`. docs/benchmarks.md, "What a log
//! open costs beyond its frames", has the figures.

use std::time::Instant;

use tasklog::store::record::TAG_EVENT;
use tasklog::task::wire::decode_event_ref;
use tasklog::wal::{Wal, WalOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: replay_floor DIR [ROUNDS]"));
    let rounds: usize = args
        .next()
        .map_or(3, |r| r.parse().expect("ROUNDS is a number"));
    let options = || WalOptions {
        read_only: true,
        ..WalOptions::default()
    };
    for _ in 0..rounds {
        let (wal, _) = Wal::open(tasklog::store::wal_dir(&dir), options()).expect("open the log");
        let start = Instant::now();
        let mut records = 0u64;
        wal.replay(0, &mut |_, _| {
            records += 1;
            Ok(())
        })
        .expect("replay");
        let frames = start.elapsed();

        let start = Instant::now();
        let mut events = 0u64;
        wal.replay(0, &mut |_, bytes| {
            if let Some((&TAG_EVENT, body)) = bytes.split_first() {
                std::hint::black_box(decode_event_ref(body).expect("an event decodes"));
                events += 1;
            }
            Ok(())
        })
        .expect("replay");
        let decoded = start.elapsed();
        drop(wal);

        let start = Instant::now();
        let store = tasklog::StoreOptions::new()
            .read_only(true)
            .open(&dir)
            .expect("open the store");
        let opened = start.elapsed();
        // Not timed: freeing the state.
        drop(store);
        println!(
            "{records} records: frames {:.3} s; frames and decoding {events} events {:.3} s \
             ({:.1}x); store open {:.3} s ({:.1}x)",
            frames.as_secs_f64(),
            decoded.as_secs_f64(),
            decoded.as_secs_f64() / frames.as_secs_f64(),
            opened.as_secs_f64(),
            opened.as_secs_f64() / frames.as_secs_f64(),
        );
    }
}
