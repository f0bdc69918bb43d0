//! Subscription durability: persistent sessions subscribe before the faults
//! and go offline; after the faults, one probe is published to each
//! subscription's topic and each session, reconnected, must receive it.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{delivered, outcome, version_for, Ctx, Identity};
use crate::history::{Kind, Op, Workload};
use crate::mqtt::Publish;

fn who(i: usize) -> Identity {
    Identity::new(format!("sd-{i}"), version_for(i), false)
}

fn topic(i: usize) -> String {
    format!("jepsen/subscriptions/{i}")
}

/// Subscribes `n` persistent sessions (recorded) and disconnects them.
pub async fn setup(ctx: &Ctx, n: usize, stop: &CancellationToken) {
    for i in 0..n {
        let who = who(i);
        loop {
            let Some((mut c, _, node)) = who.connect_any(ctx, ctx.node_id(i), stop, None).await
            else {
                return;
            };
            let op = Op::Subscribe {
                workload: Workload::Subscriptions,
                client: who.client_id.clone(),
                node,
                topic: topic(i),
            };
            let id = ctx.rec.invoke(&who.client_id, op.clone());
            let kind = match c.subscribe(&topic(i), 1).await {
                Ok(_) => Kind::Ok,
                Err(e) => outcome(&e),
            };
            ctx.rec.complete(&who.client_id, id, kind, op);
            c.disconnect().await;
            if kind == Kind::Ok {
                break;
            }
        }
    }
}

/// Publishes one probe per subscription (retrying an unanswered one with a
/// new id), then reconnects every session and records what it receives.
pub async fn probe(ctx: &Ctx, n: usize, wait: Duration) {
    let never = CancellationToken::new();
    let publisher = Identity::new("sd-probe", version_for(0), true);
    for i in 0..n {
        for attempt in 0..3 {
            let node = ctx.node_id(i + attempt);
            let deadline = Some(Instant::now() + Duration::from_secs(10));
            let Some((mut c, _, node)) = publisher.connect_any(ctx, node, &never, deadline).await
            else {
                continue;
            };
            let id = ctx.next_id();
            let op = Op::Publish {
                workload: Workload::Subscriptions,
                client: publisher.client_id.clone(),
                node,
                topic: topic(i),
                id,
                qos: 1,
            };
            let op_id = ctx.rec.invoke("sd-probe", op.clone());
            let kind = match c
                .publish(Publish::new(
                    topic(i).as_str(),
                    Bytes::from(id.to_string()),
                    1,
                ))
                .await
            {
                Ok(()) => Kind::Ok,
                Err(e) => outcome(&e),
            };
            ctx.rec.complete("sd-probe", op_id, kind, op);
            c.disconnect().await;
            if kind == Kind::Ok {
                break;
            }
        }
    }
    for i in 0..n {
        let who = who(i);
        let deadline = Instant::now() + wait;
        let Some((mut c, _, node)) = who
            .connect_any(ctx, ctx.node_id(i + 1), &never, Some(deadline))
            .await
        else {
            continue;
        };
        // Everything that arrives until a quiet second (an unanswered probe
        // may arrive before the acknowledged one).
        let mut quiet = deadline;
        while let Ok(Some(m)) = c
            .recv_timeout(quiet.saturating_duration_since(Instant::now()))
            .await
        {
            delivered(ctx, Workload::Subscriptions, &who.client_id, node, &m);
            quiet = (Instant::now() + Duration::from_secs(1)).min(deadline);
        }
        for m in c.disconnect().await {
            delivered(ctx, Workload::Subscriptions, &who.client_id, node, &m);
        }
    }
}
