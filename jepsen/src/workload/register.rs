//! The retained-value register: each key is a topic whose retained message
//! is the register's value. A write is a retained QoS 1 publish of a value
//! unique to the key; a read subscribes and takes the retained message the
//! broker sends. Writers and readers connect to random nodes.

use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{id_of, outcome, version_for, Ctx, Identity};
use crate::history::{Kind, Op};
use crate::mqtt::{Client, Publish};

/// How long a read waits for the retained message after its SUBACK.
const READ_WAIT: Duration = Duration::from_secs(2);

pub fn key(k: usize) -> String {
    format!("jepsen/register/{k}")
}

/// Writes an initial value to every key (recorded), so that every read
/// after it must see some value.
pub async fn initialise(ctx: &Ctx, keys: usize, stop: &CancellationToken) {
    let who = Identity::new("register-init", version_for(1), true);
    for k in 0..keys {
        loop {
            let Some((mut c, _, node)) = who.connect_any(ctx, 1, stop, None).await else {
                return;
            };
            if write(ctx, "register-init", &mut c, node, &key(k)).await == Kind::Ok {
                c.disconnect().await;
                break;
            }
        }
    }
}

/// Starts `writers` and `readers` processes per key.
pub fn start(
    ctx: &Ctx,
    keys: usize,
    writers: usize,
    readers: usize,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for k in 0..keys {
        for (role, n) in [("w", writers), ("r", readers)] {
            for j in 0..n {
                let (ctx, stop) = (ctx.clone(), stop.clone());
                let seed = ctx.seed ^ (((k * 97 + j * 7) as u64 + role.len() as u64) * 0x2545);
                let process = format!("register-{k}-{role}{j}");
                tasks.push(tokio::spawn(async move {
                    worker(ctx, k, role == "w", process, j, seed, stop).await;
                }));
            }
        }
    }
    tasks
}

async fn worker(
    ctx: Ctx,
    k: usize,
    writer: bool,
    process: String,
    j: usize,
    seed: u64,
    stop: CancellationToken,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let who = Identity::new(process.as_str(), version_for(j + k), true);
    let key = key(k);
    let mut conn: Option<(Client, u64)> = None;
    while !stop.is_cancelled() {
        let gap = Duration::from_millis(rng.random_range(50..300));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(gap) => {}
        }
        if conn.is_none() {
            let want = ctx.node_id(rng.random_range(0..ctx.nodes.len()));
            conn = who
                .connect_any(&ctx, want, &stop, None)
                .await
                .map(|(c, _, n)| (c, n));
        }
        let Some((client, node)) = conn.as_mut() else {
            break;
        };
        let kind = if writer {
            write(&ctx, &process, client, *node, &key).await
        } else {
            read(&ctx, &process, client, *node, &key).await
        };
        // After an unknown outcome the connection may hold late answers:
        // start over on a fresh one (and sometimes on another node anyway).
        if kind != Kind::Ok || rng.random_bool(0.1) {
            if let Some((c, _)) = conn.take() {
                c.disconnect().await;
            }
        }
    }
    if let Some((c, _)) = conn {
        c.disconnect().await;
    }
}

async fn write(ctx: &Ctx, process: &str, client: &mut Client, node: u64, key: &str) -> Kind {
    let value = ctx.next_id();
    let op = Op::Write {
        key: key.to_string(),
        node,
        value,
    };
    let id = ctx.rec.invoke(process, op.clone());
    let mut msg = Publish::new(key, Bytes::from(value.to_string()), 1);
    msg.retain = true;
    let kind = match client.publish(msg).await {
        Ok(()) => Kind::Ok,
        Err(e) => outcome(&e),
    };
    ctx.rec.complete(process, id, kind, op);
    kind
}

async fn read(ctx: &Ctx, process: &str, client: &mut Client, node: u64, key: &str) -> Kind {
    let op = Op::Read {
        key: key.to_string(),
        node,
        value: None,
    };
    let id = ctx.rec.invoke(process, op.clone());
    // Live messages from the previous read's subscription are not reads.
    while let Ok(Some(_)) = client.recv_timeout(Duration::ZERO).await {}
    let (kind, value) = match client.subscribe(key, 1).await {
        Err(e) => (outcome(&e), None),
        Ok(_) => {
            let deadline = Instant::now() + READ_WAIT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match client.recv_timeout(left).await {
                    Ok(Some(m)) if m.retain && m.topic == key => break (Kind::Ok, id_of(&m)),
                    Ok(Some(_)) => continue,
                    // No retained message in time: unknown (every key has
                    // a value from the start, so "none" is not an answer).
                    Ok(None) | Err(_) => break (Kind::Info, None),
                }
            }
        }
    };
    let done = Op::Read {
        key: key.to_string(),
        node,
        value,
    };
    ctx.rec.complete(process, id, kind, done);
    kind
}
