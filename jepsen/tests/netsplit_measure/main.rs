//! Measurements behind the netsplit issue's closing note, not assertions:
//! run by hand (`cargo test --release -p raftmq-jepsen --test
//! netsplit_measure -- --ignored --nocapture`), as root. They print what
//! they measured.

#[path = "../common/mod.rs"]
mod common;
// Shared with the netsplit tests; not every helper is used here.
#[allow(dead_code)]
#[path = "../netsplit/support.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftmq_jepsen::mqtt::Version;
use support::*;

/// QoS 1 publishes acknowledged per second by `clients` publishers on the
/// majority nodes `nodes`, over `secs` seconds.
async fn qos1_rate(s: &Split, nodes: &[u64], clients: usize, secs: u64) -> f64 {
    let acked = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let addr = s.mqtt(nodes[i % nodes.len()]);
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("load-{i}-{}", rand_suffix());
            let Ok((mut c, _)) = connect(addr, &id, Version::V311).await else {
                return;
            };
            let mut n = 0u64;
            while Instant::now() < until {
                if c.publish(msg("load/t", &format!("{n}"), 1)).await.is_ok() {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        }));
    }
    let start = Instant::now();
    for t in tasks {
        let _ = t.await;
    }
    acked.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement: run by hand"]
async fn measure_majority_qos1_throughput_before_and_during_a_split() {
    let mut s = Split::start("");
    let f = s.follower();
    let majority: Vec<u64> = (1..=3).filter(|id| *id != f).collect();
    let (mut sub, _) = connect(s.mqtt(majority[0]), "load-sub", Version::V5)
        .await
        .expect("connect");
    sub.subscribe("load/#", 1).await.expect("subscribe");
    let drain = tokio::spawn(async move { while sub.recv().await.is_ok() {} });
    let mut rows = Vec::new();
    for round in 0..3 {
        let before = qos1_rate(&s, &majority, 32, 8).await;
        s.isolate(f);
        let during = qos1_rate(&s, &majority, 32, 8).await;
        s.heal();
        eprintln!("round {round}: majority QoS 1 acks/s before the split {before:.0}, during it {during:.0} (ratio {:.2})", during / before);
        rows.push((before, during));
    }
    drain.abort();
    let mut ratios: Vec<f64> = rows.iter().map(|(b, d)| d / b).collect();
    ratios.sort_by(|a, b| a.total_cmp(b));
    eprintln!("median ratio during/before: {:.2}", ratios[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand"]
async fn measure_heal_to_healthy_after_10_and_60_s_splits() {
    let mut s = Split::start("");
    for split_s in [10, 60] {
        let f = s.follower();
        s.isolate(f);
        std::thread::sleep(Duration::from_secs(split_s));
        let took = s.heal();
        eprintln!(
            "after a {split_s} s split, isolated node {f} was healthy {took:?} after the heal"
        );
        let l = s.leader();
        s.isolate(l);
        std::thread::sleep(Duration::from_secs(split_s));
        let took = s.heal();
        eprintln!("after a {split_s} s split, isolated old leader {l} was healthy {took:?} after the heal");
    }
}
