//! The leadership lease (`Leadership`, a JetStream KV key per store) against a real 3-node
//! NATS cluster (tests/support): one leader among contenders, takeover only after a full
//! lease of silence, the paused old leader finds out and its appends are fenced, a clean
//! release hands over at once, and the lease outlives a SIGKILLed node. Skipped with a notice
//! when no `nats-server` is installed (CI sets `TASKLOG_REQUIRE_EXTRAS=1`).

mod support;

use std::time::{Duration, Instant};

use tasklog::store::Log;
use tasklog_jetstream::{Leadership, LeadershipOptions};

const LEASE: Duration = Duration::from_millis(1500);

fn opts(cluster: &support::Cluster, holder: &str) -> LeadershipOptions {
    LeadershipOptions::new(
        cluster.urls(),
        "TASKS",
        holder,
        format!("http://{holder}:8080"),
    )
    .lease(LEASE)
    .replicas(3)
}

/// The first acquire, retrying while the cluster elects its JetStream leaders.
fn first(cluster: &support::Cluster, holder: &str) -> Leadership {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Leadership::acquire(opts(cluster, holder), Duration::from_secs(5)) {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                eprintln!("acquire: {e}; retrying");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("no lease within 30 s: {e}\n{}", cluster.logs()),
        }
    }
}

fn records(log: &dyn Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    log.replay(1, &mut |_, rec| {
        out.push(rec.to_vec());
        Ok(())
    })
    .expect("replay should succeed");
    out
}

#[test]
fn one_leader_among_contenders_and_a_clean_release_hands_over_at_once() {
    let Some(cluster) = support::cluster_or_skip("lease: one leader") else {
        return;
    };
    let a = first(&cluster, "a");
    assert!(a.is_leader());
    // Two more contenders at once, each waiting less than a lease: both refused, naming `a`.
    let handles: Vec<_> = ["b", "c"]
        .into_iter()
        .map(|h| {
            let o = opts(&cluster, h);
            std::thread::spawn(move || Leadership::acquire(o, LEASE / 2).map(|_| ()))
        })
        .collect();
    for h in handles {
        let err = h
            .join()
            .expect("no panic")
            .expect_err("a live lease must not be taken");
        assert!(
            err.to_string().contains("\"a\""),
            "the error names the holder: {err}"
        );
    }
    // Renewals keep it for many leases.
    std::thread::sleep(LEASE * 3);
    assert!(a.is_leader(), "a renewing holder keeps the lease");
    let holder = a.holder().expect("should read").expect("held");
    assert_eq!(
        (holder.holder.as_str(), holder.address.as_str()),
        ("a", "http://a:8080")
    );

    a.release().expect("release should succeed");
    let b = Leadership::acquire(opts(&cluster, "b"), LEASE * 4).expect("b should take over");
    assert!(
        b.waited() < LEASE / 2,
        "a released lease is taken without waiting for it to run out: {:?}",
        b.waited()
    );
    assert!(b.is_leader());
}

#[test]
fn a_paused_leader_loses_the_lease_and_its_appends_are_fenced() {
    let Some(cluster) = support::cluster_or_skip("lease: paused leader") else {
        return;
    };
    let a = first(&cluster, "a");
    let a_log = cluster.open(cluster.options("TASKS").writer_id("a"));
    let t = a_log.submit(&[b"a1"]).expect("a appends while leader");
    a_log.wait_durable(t.last_lsn()).expect("durable");
    let a_watch = a.watch();

    // `a` freezes (as a SIGSTOPped process would): no more renewals.
    a.pause_renewals(true);
    let b = Leadership::acquire(opts(&cluster, "b"), LEASE * 10).expect("b should take over");
    let took = b.waited();
    eprintln!("takeover after a paused leader: {took:?} (lease {LEASE:?})");
    assert!(
        took >= LEASE.mul_f64(0.9),
        "no takeover before a full lease of silence: {took:?}"
    );
    assert!(
        took < LEASE + Duration::from_secs(2),
        "takeover within lease + 2 s: {took:?}"
    );
    // By the time `b` holds the lease, `a` already knows it lost it, by its own clock.
    assert!(
        !a.is_leader(),
        "the old holder's lease ran out before the takeover"
    );

    // The new leader opens the log (learning the last sequence) and appends.
    let b_log = cluster.open(cluster.options("TASKS").writer_id("b"));
    let t = b_log.submit(&[b"b1"]).expect("b appends");
    b_log.wait_durable(t.last_lsn()).expect("durable");

    // `a` resumes: its renewal is refused, and its old log is fenced.
    a.pause_renewals(false);
    std::thread::sleep(LEASE / 2);
    assert!(!a.is_leader());
    assert!(!*a_watch.borrow(), "the watch says leadership is lost");
    let refused = a_log
        .submit(&[b"a-late"])
        .and_then(|t| a_log.wait_durable(t.last_lsn()));
    assert!(
        refused.is_err(),
        "the deposed writer's append must be refused"
    );
    assert!(b.is_leader(), "b keeps the lease after a resumed");
    assert_eq!(
        records(&b_log),
        vec![b"a1".to_vec(), b"b1".to_vec()],
        "nothing the deposed writer tried is stored"
    );
}

/// Even a holder whose clock misled it (it still believes its lease fresh after another
/// process took over) is deposed at its next renewal: the renewal is a compare-and-set on the
/// revision it last wrote, which the takeover changed.
#[test]
fn a_holder_whose_clock_stood_still_is_deposed_by_the_revision_cas() {
    let Some(cluster) = support::cluster_or_skip("lease: stopped clock") else {
        return;
    };
    let a = first(&cluster, "a");
    a.stop_clock(true);
    let b = Leadership::acquire(opts(&cluster, "b"), LEASE * 10).expect("b should take over");
    assert!(
        a.is_leader(),
        "a's stopped clock says its lease is fresh (the broken assumption)"
    );
    a.stop_clock(false);
    // a's next renewal (within lease/3) is refused; b keeps the lease through several renewals.
    std::thread::sleep(LEASE * 2);
    assert!(!a.is_leader(), "the refused renewal deposes a");
    assert!(b.is_leader(), "b keeps the lease");
    assert_eq!(b.holder().expect("should read").expect("held").holder, "b");
}

#[test]
fn the_lease_survives_a_sigkilled_node() {
    let Some(mut cluster) = support::cluster_or_skip("lease: node kill") else {
        return;
    };
    // The lease must outlast the bucket stream's re-election after a node dies (about 6 s
    // measured here, as for the log: docs/durability.md): the default 10 s.
    let lease = Duration::from_secs(10);
    let urls = cluster.urls();
    let o = |h: &str| {
        LeadershipOptions::new(urls.clone(), "TASKS", h, format!("http://{h}:8080"))
            .lease(lease)
            .replicas(3)
    };
    let a = Leadership::acquire(o("a"), Duration::from_secs(30)).expect("a leads");
    // SIGKILL the node leading the bucket's stream (the KV's leader).
    let leader = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let client = async_nats::connect(urls.split(',').collect::<Vec<_>>())
                .await
                .unwrap();
            let js = async_nats::jetstream::new(client);
            let mut s = js.get_stream("KV_tasklog_leaders").await.unwrap();
            s.info()
                .await
                .unwrap()
                .cluster
                .as_ref()
                .and_then(|c| c.leader.clone())
        })
        .expect("the bucket has a leader");
    let i = cluster
        .nodes
        .iter()
        .position(|n| n.name == leader)
        .expect("a node of ours");
    cluster.kill(i);
    // Renewals go on through the new stream leader; nobody else gets the lease.
    std::thread::sleep(lease + lease / 2);
    assert!(
        a.is_leader(),
        "the lease outlives one killed node\n{}",
        cluster.logs()
    );
    let err = Leadership::acquire(o("b"), Duration::from_secs(2));
    assert!(err.is_err(), "a live lease is not taken after a node kill");
    a.release()
        .expect("release should succeed with a node down");
    let b = Leadership::acquire(o("b"), Duration::from_secs(5)).expect("b should take over");
    assert!(b.is_leader());
}
