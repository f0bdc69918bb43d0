//! The nemesis: the faults a scenario injects, on a schedule fixed by the
//! run's seed. Each fault is recorded in the history as an operation of
//! process "nemesis": invoked when injected, completed (`Ok`) when healed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::cluster::Cluster;
use crate::history::{Kind, Op, Recorder};

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No fault (a baseline).
    None,
    /// A random node cut off from the others.
    IsolateOne,
    /// The current leader cut off from the others.
    IsolateLeader,
    /// A majority ring: one node sees both others, which cannot see each other.
    Bridge,
    /// The nodes shuffled and split into two halves.
    Halves,
    /// Short random partitions in quick succession.
    Flapping,
    /// SIGKILL of a random node, restarted after a while.
    KillOne,
    /// SIGKILL of the leader, restarted after a while.
    KillLeader,
    /// SIGSTOP of a random node for a few seconds, then SIGCONT.
    Pause,
    /// SIGKILL of every node, then all restarted.
    KillAll,
    /// A node leaves the cluster (`cluster leave -k`), is wiped, and joins again.
    Membership,
    /// Negative control: every node killed, two of them (node 1 among them)
    /// wiped and restarted, the third restarted later: acknowledged writes
    /// are expected to be lost.
    Amnesia,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::IsolateOne => "isolate-one",
            Fault::IsolateLeader => "isolate-leader",
            Fault::Bridge => "bridge",
            Fault::Halves => "halves",
            Fault::Flapping => "flapping",
            Fault::KillOne => "kill-one",
            Fault::KillLeader => "kill-leader",
            Fault::Pause => "pause",
            Fault::KillAll => "kill-all",
            Fault::Membership => "leave-rejoin",
            Fault::Amnesia => "amnesia",
        }
    }

    /// (quiet before, fault duration) ranges in milliseconds.
    fn timing(self) -> ((u64, u64), (u64, u64)) {
        match self {
            Fault::Flapping => ((300, 1200), (600, 2500)),
            Fault::Pause => ((2000, 4000), (2000, 5000)),
            Fault::KillAll => ((3000, 5000), (1000, 3000)),
            Fault::Membership => ((3000, 5000), (1000, 2000)),
            Fault::Amnesia => ((3000, 5000), (3000, 6000)),
            _ => ((2000, 4000), (3000, 7000)),
        }
    }
}

/// The cluster shared by the nemesis, the role monitor and the run.
pub type Shared = Arc<Mutex<Cluster>>;

fn lock(c: &Shared) -> std::sync::MutexGuard<'_, Cluster> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// What an injected fault touched, to heal it.
struct Injected {
    nodes: Vec<u64>,
    detail: String,
    heal: Heal,
}

enum Heal {
    Network,
    Restart(Vec<u64>),
    Resume(Vec<u64>),
    /// Already healed as part of the fault (membership: rejoined).
    Done,
}

/// Runs `fault` on its schedule until `until`, then heals everything.
pub async fn run(fault: Fault, seed: u64, cluster: Shared, rec: Recorder, until: Instant) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e656d65);
    if fault == Fault::None {
        tokio::time::sleep_until(until).await;
        return;
    }
    let ((q0, q1), (d0, d1)) = fault.timing();
    loop {
        let quiet = Duration::from_millis(rng.random_range(q0..=q1));
        let dur = Duration::from_millis(rng.random_range(d0..=d1));
        if Instant::now() + quiet + dur > until {
            break;
        }
        tokio::time::sleep(quiet).await;
        let pick: u64 = rng.random();
        let c = cluster.clone();
        let injected = tokio::task::spawn_blocking(move || inject(fault, pick, &c))
            .await
            .unwrap_or_else(|e| Err(format!("nemesis task: {e}")));
        let injected = match injected {
            Ok(i) => i,
            Err(e) => {
                rec.event(
                    "nemesis",
                    Op::Note {
                        text: format!("{} not injected: {e}", fault.name()),
                    },
                );
                continue;
            }
        };
        let op = Op::Fault {
            name: fault.name().to_string(),
            nodes: injected.nodes.clone(),
            detail: injected.detail.clone(),
        };
        let id = rec.invoke("nemesis", op.clone());
        if !matches!(injected.heal, Heal::Done) {
            tokio::time::sleep(dur).await;
        }
        let c = cluster.clone();
        let heal = injected.heal;
        let healed = tokio::task::spawn_blocking(move || apply_heal(heal, &c))
            .await
            .unwrap_or_else(|e| Err(format!("nemesis task: {e}")));
        if let Err(e) = healed {
            rec.event(
                "nemesis",
                Op::Note {
                    text: format!("heal failed: {e}"),
                },
            );
        }
        rec.complete("nemesis", id, Kind::Ok, op);
    }
}

/// Heals every fault: network cuts removed, paused nodes resumed, stopped
/// nodes started.
pub fn heal_all(cluster: &Shared) -> Result<(), String> {
    let mut c = lock(cluster);
    c.net.heal().map_err(|e| e.to_string())?;
    for n in &mut c.nodes {
        if n.is_paused() {
            n.resume();
        }
        if !n.is_running() {
            n.start()
                .map_err(|e| format!("starting node {}: {e}", n.id()))?;
        }
    }
    Ok(())
}

fn apply_heal(heal: Heal, cluster: &Shared) -> Result<(), String> {
    let mut c = lock(cluster);
    match heal {
        Heal::Network => c.net.heal().map_err(|e| e.to_string()),
        Heal::Restart(ids) => {
            for id in ids {
                c.node_mut(id)
                    .start()
                    .map_err(|e| format!("starting node {id}: {e}"))?;
            }
            Ok(())
        }
        Heal::Resume(ids) => {
            for id in ids {
                c.node_mut(id).resume();
            }
            Ok(())
        }
        Heal::Done => Ok(()),
    }
}

fn inject(fault: Fault, pick: u64, cluster: &Shared) -> Result<Injected, String> {
    let mut rng = StdRng::seed_from_u64(pick);
    let ids = lock(cluster).ids();
    let random = ids[rng.random_range(0..ids.len())];
    let leader = || lock(cluster).leader().unwrap_or(random);
    let others = |n: u64| ids.iter().copied().filter(|&i| i != n).collect::<Vec<_>>();
    let net_err = |e: crate::net::NetError| e.to_string();
    match fault {
        Fault::None => Err("no fault".into()),
        Fault::IsolateOne | Fault::IsolateLeader => {
            let victim = if fault == Fault::IsolateLeader {
                leader()
            } else {
                random
            };
            let groups = vec![vec![victim], others(victim)];
            lock(cluster).net.partition(&groups).map_err(net_err)?;
            Ok(Injected {
                nodes: vec![victim],
                detail: format!("{:?} | {:?}", groups[0], groups[1]),
                heal: Heal::Network,
            })
        }
        Fault::Bridge => {
            let o = others(random);
            lock(cluster)
                .net
                .cut_pairs(&[(o[0], o[1])])
                .map_err(net_err)?;
            Ok(Injected {
                nodes: o.clone(),
                detail: format!("{} bridges {} and {}", random, o[0], o[1]),
                heal: Heal::Network,
            })
        }
        Fault::Halves | Fault::Flapping => {
            let mut shuffled = ids.clone();
            shuffled.shuffle(&mut rng);
            let (a, b) = shuffled.split_at(shuffled.len() / 2);
            let groups = vec![a.to_vec(), b.to_vec()];
            lock(cluster).net.partition(&groups).map_err(net_err)?;
            Ok(Injected {
                nodes: a.to_vec(),
                detail: format!("{:?} | {:?}", groups[0], groups[1]),
                heal: Heal::Network,
            })
        }
        Fault::KillOne | Fault::KillLeader => {
            let victim = if fault == Fault::KillLeader {
                leader()
            } else {
                random
            };
            lock(cluster).node_mut(victim).kill();
            Ok(Injected {
                nodes: vec![victim],
                detail: format!("SIGKILL node {victim}"),
                heal: Heal::Restart(vec![victim]),
            })
        }
        Fault::Pause => {
            let victim = if rng.random_bool(0.5) {
                leader()
            } else {
                random
            };
            lock(cluster).node_mut(victim).pause();
            Ok(Injected {
                nodes: vec![victim],
                detail: format!("SIGSTOP node {victim}"),
                heal: Heal::Resume(vec![victim]),
            })
        }
        Fault::KillAll => {
            let mut c = lock(cluster);
            for n in &mut c.nodes {
                n.kill();
            }
            Ok(Injected {
                nodes: ids.clone(),
                detail: "SIGKILL every node".into(),
                heal: Heal::Restart(ids.clone()),
            })
        }
        Fault::Membership => leave_and_rejoin(random, cluster),
        Fault::Amnesia => {
            // Every node killed; node 1 (which bootstraps when its directory
            // is empty) and one other wiped and started again, so they form
            // a new, empty cluster and take writes; the node that kept its
            // data comes back at the heal.
            let kept = ids[1 + rng.random_range(0..ids.len() - 1)];
            let wiped: Vec<u64> = ids.iter().copied().filter(|&i| i != kept).collect();
            let mut c = lock(cluster);
            for n in &mut c.nodes {
                n.kill();
            }
            for &v in &wiped {
                let n = c.node_mut(v);
                n.wipe().map_err(|e| format!("wiping node {v}: {e}"))?;
                n.start().map_err(|e| format!("starting node {v}: {e}"))?;
            }
            Ok(Injected {
                nodes: wiped.clone(),
                detail: format!(
                    "SIGKILL every node; nodes {wiped:?} wiped and restarted; node {kept} restarted at the heal"
                ),
                heal: Heal::Restart(vec![kept]),
            })
        }
    }
}

/// `cluster leave -k` of `victim` through another node, then the victim is
/// stopped, wiped and started again to join through that node.
fn leave_and_rejoin(victim: u64, cluster: &Shared) -> Result<Injected, String> {
    let (via, via_http) = {
        let c = lock(cluster);
        let via = c.ids().into_iter().find(|&i| i != victim).unwrap_or(1);
        (via, c.node(via).http())
    };
    let said = admin::leave(via_http, victim)?;
    let size = lock(cluster).nodes.len();
    lock(cluster)
        .wait_voters(size - 1, Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    {
        let mut c = lock(cluster);
        let join = c.node(via).cluster();
        let n = c.node_mut(victim);
        n.stop(Duration::from_secs(10));
        n.wipe().map_err(|e| format!("wiping node {victim}: {e}"))?;
        n.spec.join = Some(join);
        n.start()
            .map_err(|e| format!("starting node {victim}: {e}"))?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let c = lock(cluster);
        if admin::healthy(c.node(victim).http()) && c.wait_voters(size, Duration::ZERO).is_ok() {
            break;
        }
        drop(c);
        if std::time::Instant::now() > deadline {
            return Err(format!("node {victim} did not rejoin within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Injected {
        nodes: vec![victim],
        detail: format!("node {victim} left via node {via} ({said}), wiped, rejoined"),
        heal: Heal::Done,
    })
}

/// Samples each node's role every `every` until `until`, as `Role` events:
/// "paused" or "down" from the nemesis's own knowledge, else what the node
/// says of itself ("leader", "follower", "no-leader"), or "down" when it
/// does not answer.
pub async fn monitor_roles(
    cluster: Shared,
    rec: Recorder,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        let c = cluster.clone();
        let samples = tokio::task::spawn_blocking(move || {
            let nodes: Vec<(u64, Option<&'static str>, std::net::SocketAddr)> = {
                let mut c = lock(&c);
                c.nodes
                    .iter_mut()
                    .map(|n| {
                        let state = if n.is_paused() {
                            Some("paused")
                        } else if !n.is_running() {
                            Some("down")
                        } else {
                            None
                        };
                        (n.id(), state, n.http())
                    })
                    .collect()
            };
            nodes
                .into_iter()
                .map(|(id, state, http)| {
                    let role = match state {
                        Some(s) => s.to_string(),
                        None => admin::role(http).map_or_else(|_| "down".to_string(), |r| r.role),
                    };
                    (id, role)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (node, role) in samples {
            rec.event("monitor", Op::Role { node, role });
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
