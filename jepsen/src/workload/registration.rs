//! Registration contention: for each of a few client ids, one process per
//! node connects with that id again and again. Each CONNECT is a recorded
//! operation; while connected, the process proves its connection live with
//! acknowledged QoS 1 publishes (`Touch`), so the sessions checker can see
//! two live connections for one id.

use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{outcome, version_for, Ctx, Identity};
use crate::history::{Kind, Op, Workload};
use crate::mqtt::Publish;

/// Starts `ids` × (one process per node) contenders.
pub fn start(ctx: &Ctx, ids: usize, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for i in 0..ids {
        for w in 0..ctx.nodes.len() {
            let (ctx, stop) = (ctx.clone(), stop.clone());
            let seed = ctx.seed ^ (((i * 31 + w) as u64 + 7) * 0x51ed);
            tasks.push(tokio::spawn(async move {
                contender(ctx, i, w, seed, stop).await;
            }));
        }
    }
    tasks
}

async fn contender(ctx: Ctx, i: usize, w: usize, seed: u64, stop: CancellationToken) {
    let mut rng = StdRng::seed_from_u64(seed);
    let client_id = format!("reg-{i}");
    let process = format!("reg-{i}-w{w}");
    let node = ctx.node_id(w);
    while !stop.is_cancelled() {
        let who = Identity::new(client_id.as_str(), version_for(w), rng.random_bool(0.5));
        let conn = ctx.next_id();
        let op = Op::Connect {
            workload: Workload::Registration,
            client: client_id.clone(),
            conn,
            node,
            clean: who.clean,
        };
        let op_id = ctx.rec.invoke(&process, op.clone());
        let mut client = match who.connect(&ctx, node).await {
            Ok((c, _)) => {
                ctx.rec.complete(&process, op_id, Kind::Ok, op);
                c
            }
            Err(e) => {
                ctx.rec.complete(&process, op_id, outcome(&e), op);
                pause(&mut rng, &stop).await;
                continue;
            }
        };
        let touches = rng.random_range(3..12);
        for _ in 0..touches {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(rng.random_range(50..250))) => {}
            }
            let op = Op::Touch {
                client: client_id.clone(),
                conn,
                node,
            };
            let op_id = ctx.rec.invoke(&process, op.clone());
            let msg = Publish::new(
                format!("jepsen/touch/{client_id}").as_str(),
                Bytes::from(conn.to_string()),
                1,
            );
            match client.publish(msg).await {
                Ok(()) => ctx.rec.complete(&process, op_id, Kind::Ok, op),
                Err(e) => {
                    ctx.rec.complete(&process, op_id, outcome(&e), op);
                    break;
                }
            }
        }
        if rng.random_bool(0.5) {
            client.disconnect().await;
        } else {
            drop(client);
        }
        pause(&mut rng, &stop).await;
    }
}

async fn pause(rng: &mut StdRng, stop: &CancellationToken) {
    let d = Duration::from_millis(rng.random_range(0..400));
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
