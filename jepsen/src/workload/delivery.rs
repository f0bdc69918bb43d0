//! The QoS 1 queue and QoS 2 exactly-once workloads: persistent subscribers
//! on every node (which also go offline now and then, so messages queue for
//! them) and persistent publishers that publish unique ids and, like any
//! MQTT client, resend an unanswered message after reconnecting.

use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{delivered, outcome, version_for, Ctx, Identity};
use crate::history::{Kind, Op, Workload};
use crate::mqtt::{Client, Message, MqttError, Publish};

/// One delivery workload's shape.
#[derive(Debug, Clone)]
pub struct Params {
    pub workload: Workload,
    pub qos: u8,
    pub topic: String,
    pub publishers: usize,
    pub subscribers: usize,
    /// Publishes a second, per publisher.
    pub rate: f64,
    /// How long one publish may take, resends included, before its outcome
    /// is recorded as unknown.
    pub publish_deadline: Duration,
}

impl Params {
    fn prefix(&self) -> &'static str {
        match self.workload {
            Workload::ExactlyOnce => "eo",
            _ => "q",
        }
    }
}

/// Connects each subscriber and subscribes it (a recorded operation), then
/// leaves it receiving until `drain` is cancelled. Returns once every
/// subscription is acknowledged (or `stop` is cancelled).
pub async fn start_subscribers(
    ctx: &Ctx,
    p: &Params,
    drain: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for i in 0..p.subscribers {
        let who = Identity::new(format!("{}-sub-{i}", p.prefix()), version_for(i), false);
        let node = ctx.node_id(i);
        let Some((client, node)) = subscribe_until_ok(ctx, p, &who, node, drain).await else {
            continue;
        };
        let (ctx, p, drain) = (ctx.clone(), p.clone(), drain.clone());
        let seed = ctx.seed ^ ((i as u64 + 1) * 0x9e37);
        tasks.push(tokio::spawn(async move {
            subscriber(ctx, p, who, client, node, seed, drain).await;
        }));
    }
    tasks
}

/// Connects and subscribes until the SUBSCRIBE is acknowledged.
async fn subscribe_until_ok(
    ctx: &Ctx,
    p: &Params,
    who: &Identity,
    node: u64,
    stop: &CancellationToken,
) -> Option<(Client, u64)> {
    loop {
        let (mut client, _, node) = who.connect_any(ctx, node, stop, None).await?;
        let op = Op::Subscribe {
            workload: p.workload,
            client: who.client_id.clone(),
            node,
            topic: p.topic.clone(),
        };
        let process = who.client_id.as_str();
        let id = ctx.rec.invoke(process, op.clone());
        match client.subscribe(&p.topic, p.qos).await {
            Ok(_) => {
                ctx.rec.complete(process, id, Kind::Ok, op);
                return Some((client, node));
            }
            Err(e) => ctx.rec.complete(process, id, outcome(&e), op),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn subscriber(
    ctx: Ctx,
    p: Params,
    who: Identity,
    mut client: Client,
    mut node: u64,
    seed: u64,
    drain: CancellationToken,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let process = who.client_id.clone();
    let mut next_offline = Instant::now() + Duration::from_millis(rng.random_range(3000..8000));
    loop {
        // Receive until the connection ends, it is time to go offline, or
        // the run is over.
        let deliver = |m: &Message, node: u64| delivered(&ctx, p.workload, &process, node, m);
        let offline = loop {
            let got = tokio::select! {
                _ = drain.cancelled() => {
                    for m in client.disconnect().await {
                        deliver(&m, node);
                    }
                    return;
                }
                _ = tokio::time::sleep_until(next_offline) => break true,
                got = client.recv() => got,
            };
            match got {
                Ok(m) => deliver(&m, node),
                Err(_) => break false,
            }
        };
        if offline {
            // What arrived (and was acknowledged) before the DISCONNECT was
            // delivered, whether or not it was read yet.
            for m in client.disconnect().await {
                deliver(&m, node);
            }
            let away = Duration::from_millis(rng.random_range(1000..3000));
            tokio::select! {
                _ = drain.cancelled() => return,
                _ = tokio::time::sleep(away) => {}
            }
            next_offline = Instant::now() + Duration::from_millis(rng.random_range(4000..10000));
        }
        let want = ctx.node_id(rng.random_range(0..ctx.nodes.len()));
        let Some((c, ack, at)) = who.connect_any(&ctx, want, &drain, None).await else {
            return;
        };
        (client, node) = (c, at);
        if !ack.session_present {
            ctx.rec.event(
                &process,
                Op::Note {
                    text: format!("{process}: session not present on reconnect to node {at}; subscribing again"),
                },
            );
            match subscribe_until_ok(&ctx, &p, &who, at, &drain).await {
                Some((c, at)) => (client, node) = (c, at),
                None => return,
            }
        }
    }
}

/// Starts the publishers; they run until `stop` is cancelled and finish
/// their current publish.
pub fn start_publishers(ctx: &Ctx, p: &Params, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    (0..p.publishers)
        .map(|k| {
            let (ctx, p, stop) = (ctx.clone(), p.clone(), stop.clone());
            tokio::spawn(async move { publisher(ctx, p, k, stop).await })
        })
        .collect()
}

async fn publisher(ctx: Ctx, p: Params, k: usize, stop: CancellationToken) {
    let who = Identity::new(format!("{}-pub-{k}", p.prefix()), version_for(k), false);
    let process = who.client_id.clone();
    let every = Duration::from_secs_f64(1.0 / p.rate.max(0.01));
    let mut conn: Option<(Client, u64)> = None;
    let mut next = Instant::now();
    while !stop.is_cancelled() {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(next) => {}
        }
        next = (next + every).max(Instant::now());
        if conn.is_none() {
            conn = who
                .connect_any(&ctx, ctx.node_id(k), &stop, None)
                .await
                .map(|(c, _, n)| (c, n));
        }
        let Some((_, node)) = conn.as_ref() else {
            break;
        };
        let id = ctx.next_id();
        let op = Op::Publish {
            workload: p.workload,
            client: who.client_id.clone(),
            node: *node,
            topic: p.topic.clone(),
            id,
            qos: p.qos,
        };
        let op_id = ctx.rec.invoke(&process, op.clone());
        let kind = publish_with_resends(&ctx, &p, &who, &mut conn, id).await;
        ctx.rec.complete(&process, op_id, kind, op);
    }
    if let Some((c, _)) = conn {
        c.disconnect().await;
    }
}

/// Publishes message `id`; after a lost connection, reconnects (same
/// session) and resends it with DUP, or sends PUBREL if its PUBREC had
/// arrived, until acknowledged or the deadline. A refusal is definite only on
/// the first attempt: after an unanswered attempt, the message may already
/// have been taken.
async fn publish_with_resends(
    ctx: &Ctx,
    p: &Params,
    who: &Identity,
    conn: &mut Option<(Client, u64)>,
    id: u64,
) -> Kind {
    let deadline = Instant::now() + p.publish_deadline;
    let pkid = who.state.next_pkid();
    let payload = Bytes::from(id.to_string());
    let (mut first, mut released) = (true, false);
    let never = CancellationToken::new();
    loop {
        if let Some((client, _)) = conn.as_mut() {
            let r = if released {
                client.release(pkid).await
            } else {
                let mut msg = Publish::new(p.topic.as_str(), payload.clone(), p.qos);
                msg.pkid = Some(pkid);
                msg.dup = !first;
                client.publish(msg).await
            };
            match r {
                Ok(()) => return Kind::Ok,
                Err(MqttError::Refused(_)) if first => return Kind::Fail,
                Err(MqttError::Refused(_)) => return Kind::Info,
                Err(MqttError::AfterPubrec) => released = true,
                Err(_) => {}
            }
            first = false;
            *conn = None;
        }
        if Instant::now() >= deadline {
            return Kind::Info;
        }
        // Reconnect to the same session; without it a resend would be a new
        // message, so the outcome stays unknown.
        let node = ctx.node_id(id as usize);
        match who.connect_any(ctx, node, &never, Some(deadline)).await {
            Some((c, ack, n)) => {
                *conn = Some((c, n));
                if !ack.session_present {
                    return Kind::Info;
                }
            }
            None => return Kind::Info,
        }
    }
}
