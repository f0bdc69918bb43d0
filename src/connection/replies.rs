//! The answers a connection owes its client: commands proposed and not yet
//! applied, each with the reply to send once its result is known, in the
//! order the client sent them; and how a result becomes packets.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use raftmq_raft::node::now_ms;
use raftmq_raft::proposer::ResultRx;
use raftmq_raft::{CmdResult, RaftError, SubOpts};
use tokio::sync::oneshot::error::TryRecvError;
use tokio::time::{Instant, Sleep};
use tracing::warn;

use super::close::Exit;
use super::Conn;
use crate::codec::{self, reason, Packet, PubResp};
use crate::resources::Limit;

/// What to send once a command is applied.
#[derive(Debug)]
pub enum Reply {
    PubAck(u16),
    PubRec(u16),
    PubComp(u16),
    SubAck {
        pid: u16,
        /// Codes decided before proposing (invalid filters); `None` where
        /// the committed result decides.
        codes: Vec<Option<u8>>,
        filters: Vec<(String, SubOpts)>,
    },
    UnsubAck {
        pid: u16,
        codes: Vec<Option<u8>>,
    },
    /// A subscriber's PUBREC was committed: send PUBREL.
    PubRel(u16),
    /// A QoS 1/2 publish this node refused without proposing it (the disk
    /// alarm): answered as a `QuotaExceeded` result, in its turn.
    Refused {
        pid: u16,
        qos: u8,
        limit: Limit,
    },
}

/// What a client's QoS 1/2 PUBLISH gets once its result is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishAnswer {
    /// PUBACK (QoS 1) or PUBREC (QoS 2) with this reason code.
    Ack(u8),
    /// The connection no longer holds its session: close it unanswered.
    TakenOver,
    /// Refused by a resource limit, and MQTT 3 has no code to say so:
    /// close the connection unanswered; the client resends after
    /// reconnecting.
    Close,
    /// Not committed, finally (never proposed), and MQTT 3 has no code to
    /// say so: close the connection unanswered; the client resends after
    /// reconnecting.
    NotCommitted,
    /// The outcome is unknown (it may still take effect): the client is not
    /// told it failed; the connection closes so that it resends.
    Unknown,
}

/// The answer to a client's QoS 1/2 PUBLISH for its command's result.
pub fn publish_answer(res: &Result<CmdResult, RaftError>, v5: bool) -> PublishAnswer {
    match res {
        Ok(CmdResult::Stale) => PublishAnswer::TakenOver,
        Ok(CmdResult::QuotaExceeded) if v5 => PublishAnswer::Ack(reason::QUOTA_EXCEEDED),
        Ok(CmdResult::QuotaExceeded) => PublishAnswer::Close,
        Ok(CmdResult::Published {
            matched: 0,
            duplicate: false,
        }) if v5 => PublishAnswer::Ack(reason::NO_MATCHING_SUBSCRIBERS),
        Ok(_) => PublishAnswer::Ack(reason::SUCCESS),
        Err(RaftError::NotCommitted(_)) if v5 => {
            PublishAnswer::Ack(reason::IMPLEMENTATION_SPECIFIC_ERROR)
        }
        Err(RaftError::NotCommitted(_)) => PublishAnswer::NotCommitted,
        Err(_) => PublishAnswer::Unknown,
    }
}

/// The exit for a command that got no committed result: refused finally
/// (`NotCommitted`) or unknown (anything else).
pub fn unavailable(e: &RaftError) -> Exit {
    Exit::Unavailable {
        unknown: !matches!(e, RaftError::NotCommitted(_)),
    }
}

pub type Outcome = (Reply, Result<CmdResult, RaftError>);

/// A command's result: awaited, or already known.
enum Answer {
    Waiting(ResultRx),
    Known(Result<CmdResult, RaftError>),
}

/// Commands awaiting their results, answered in the order they were sent.
///
/// MQTT answers in order, so only the oldest command is awaited (its
/// receiver alone registers a waker); those behind it are taken as soon as
/// it is answered. No allocation, task or timer per command: one queue,
/// empty (unallocated) while the connection is idle, and one backstop timer
/// that is re-armed only when it fires (see [`Replies::next`]).
pub struct Replies {
    waiting: VecDeque<(Reply, Answer, Instant)>,
    timeout: Duration,
    /// Fires at (or after) the oldest command's deadline; created on first
    /// use.
    backstop: Option<Pin<Box<Sleep>>>,
}

impl Replies {
    /// A command not applied within `timeout` fails.
    pub fn new(timeout: Duration) -> Replies {
        Replies {
            waiting: VecDeque::new(),
            timeout,
            backstop: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Awaits `rx`, then answers with `reply`.
    pub fn push(&mut self, rx: ResultRx, reply: Reply) {
        let deadline = Instant::now() + self.timeout;
        self.waiting
            .push_back((reply, Answer::Waiting(rx), deadline));
    }

    /// Answers with `reply` and the result already known, after the
    /// answers owed before it (MQTT orders PUBACKs as the PUBLISHes came).
    pub fn push_ready(&mut self, reply: Reply, result: Result<CmdResult, RaftError>) {
        self.waiting
            .push_back((reply, Answer::Known(result), Instant::now()));
    }

    /// The next outcome in order; `None` at once when none is waiting.
    pub async fn next(&mut self) -> Option<Outcome> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The next outcome if it is already known.
    pub fn ready(&mut self) -> Option<Outcome> {
        let (_, answer, _) = self.waiting.front_mut()?;
        let result = match answer {
            Answer::Known(_) => None,
            Answer::Waiting(rx) => match rx.try_recv() {
                Ok(r) => Some(r),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Closed) => Some(received(None)),
            },
        };
        self.pop(result)
    }

    /// Gives the queue's memory and the backstop timer back when nothing is
    /// waiting (a quiet connection).
    pub fn shrink(&mut self) {
        if self.is_empty() {
            self.waiting = VecDeque::new();
            self.backstop = None;
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Outcome>> {
        let Some((_, answer, deadline)) = self.waiting.front_mut() else {
            return Poll::Ready(None);
        };
        let result = match answer {
            Answer::Known(_) => None,
            Answer::Waiting(rx) => match Pin::new(rx).poll(cx) {
                Poll::Ready(r) => Some(received(r.ok())),
                Poll::Pending => {
                    // The backstop: past its deadline the oldest command's
                    // outcome is unknown. The timer is re-armed to the
                    // current oldest deadline only when it fires, so it
                    // costs nothing per command.
                    let deadline = *deadline;
                    let timer = self
                        .backstop
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    loop {
                        if timer.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        if Instant::now() >= deadline {
                            break Some(Err(RaftError::Unknown("no answer in time".into())));
                        }
                        timer.as_mut().reset(deadline);
                    }
                }
            },
        };
        Poll::Ready(self.pop(result))
    }

    /// Takes the oldest command with its result (`None`: the one it holds).
    fn pop(&mut self, result: Option<Result<CmdResult, RaftError>>) -> Option<Outcome> {
        let (reply, answer, _) = self.waiting.pop_front()?;
        match (result, answer) {
            (Some(r), _) => Some((reply, r)),
            (None, Answer::Known(r)) => Some((reply, r)),
            (None, Answer::Waiting(_)) => None,
        }
    }
}

/// A receiver's value: the proposer dropped it only when stopping.
fn received(r: Option<Result<CmdResult, RaftError>>) -> Result<CmdResult, RaftError> {
    r.unwrap_or(Err(RaftError::Stopped))
}

/// Waits for a command's result, bounded by `timeout`; past it the outcome
/// is unknown.
pub async fn wait(rx: ResultRx, timeout: Duration) -> Result<CmdResult, RaftError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(RaftError::Stopped),
        Err(_) => Err(RaftError::Unknown("no answer in time".into())),
    }
}

/// How long a connection waits for a client command's answer: the proposer
/// answers every one by its deadline (the commit timeout at most), so this
/// is only a backstop.
pub fn answer_bound(s: &crate::config::Settings) -> Duration {
    Duration::from_millis(s.commit_timeout_ms) + Duration::from_secs(5)
}

impl Conn {
    /// Answers the client for one committed (or failed) command. A publish
    /// or release refused as stale means this connection no longer holds
    /// its session (taken over, and this node has not applied that yet): it
    /// ends without an answer, so the client resends on its new connection.
    pub(super) fn on_outcome(&mut self, (reply, res): Outcome) -> Result<(), Exit> {
        if let Err(e) = &res {
            self.broker.metrics.commit_failures.inc();
            warn!(error = %e, "command not committed");
        }
        match reply {
            Reply::PubAck(pid) => self.publish_outcome(pid, 1, Limit::MaxQueueBytes, &res)?,
            Reply::PubRec(pid) => self.publish_outcome(pid, 2, Limit::MaxQueueBytes, &res)?,
            Reply::Refused { pid, qos, limit } => {
                self.publish_outcome(pid, qos, limit, &Ok(CmdResult::QuotaExceeded))?
            }
            Reply::PubComp(pid) => {
                let code = match &res {
                    Ok(CmdResult::Stale) => return Err(Exit::TakenOver),
                    Ok(CmdResult::Released { found: false }) => reason::PACKET_IDENTIFIER_NOT_FOUND,
                    Ok(_) => reason::SUCCESS,
                    // PUBCOMP has no failure code: close, and the client
                    // resends its PUBREL after reconnecting.
                    Err(e) => return Err(unavailable(e)),
                };
                self.io.push(Packet::PubComp(PubResp {
                    packet_id: pid,
                    reason: code,
                    ..Default::default()
                }));
            }
            Reply::SubAck {
                pid,
                codes,
                filters,
            } => {
                // SUBACK 0x80 is the truth only for a final refusal.
                match &res {
                    Err(RaftError::NotCommitted(_)) | Ok(_) => {}
                    Err(e) => return Err(unavailable(e)),
                }
                self.suback(pid, codes, filters, res)
            }
            Reply::UnsubAck { pid, codes } => {
                let committed = match res {
                    Ok(CmdResult::Unsubscribed { codes }) => codes,
                    // Applied earlier, or accepted locally during a netsplit.
                    Ok(CmdResult::Duplicate | CmdResult::Done) => {
                        vec![reason::SUCCESS; codes.len()]
                    }
                    // MQTT 5 can say a final refusal (0x80 below); MQTT 3
                    // cannot, and no version can say "unknown": close.
                    Err(RaftError::NotCommitted(_)) if self.v5() => Vec::new(),
                    Err(e) => return Err(unavailable(&e)),
                    _ => Vec::new(),
                };
                self.io.push(Packet::UnsubAck(codec::UnsubAck {
                    packet_id: pid,
                    reason_codes: merge_codes(codes, committed),
                    ..Default::default()
                }));
            }
            Reply::PubRel(pid) => {
                if res.is_ok() {
                    self.outbound.released(pid, &mut self.io);
                }
            }
        }
        Ok(())
    }

    /// PUBACK (QoS 1) or PUBREC (QoS 2) for a client's publish, its flow
    /// closed where the answer ends it. A `QuotaExceeded` result is counted
    /// against `limit`, the limit that refused it.
    fn publish_outcome(
        &mut self,
        pid: u16,
        qos: u8,
        limit: Limit,
        res: &Result<CmdResult, RaftError>,
    ) -> Result<(), Exit> {
        if matches!(res, Ok(CmdResult::QuotaExceeded)) {
            self.broker.metrics.refused(limit, qos);
        }
        let answer = publish_answer(res, self.v5());
        if qos == 1 {
            self.inbound.qos1_done();
        } else if matches!(answer, PublishAnswer::Ack(code) if code >= 0x80) {
            // A failure PUBREC ends the QoS 2 flow.
            self.inbound.qos2_done(pid);
        }
        let code = match answer {
            PublishAnswer::Ack(code) => code,
            PublishAnswer::TakenOver => return Err(Exit::TakenOver),
            PublishAnswer::Close => return Err(Exit::Refused(limit)),
            PublishAnswer::NotCommitted => return Err(Exit::Unavailable { unknown: false }),
            PublishAnswer::Unknown => return Err(Exit::Unavailable { unknown: true }),
        };
        self.ack_publish(qos, pid, code);
        Ok(())
    }

    /// Queues the acknowledgement of a client's QoS 1 (PUBACK) or QoS 2
    /// (PUBREC) publish with `code`; nothing for QoS 0.
    pub(super) fn ack_publish(&mut self, qos: u8, packet_id: u16, code: u8) {
        let r = PubResp {
            packet_id,
            reason: code,
            ..Default::default()
        };
        match qos {
            1 => self.io.push(Packet::PubAck(r)),
            2 => self.io.push(Packet::PubRec(r)),
            _ => {}
        }
    }

    fn suback(
        &mut self,
        pid: u16,
        codes: Vec<Option<u8>>,
        filters: Vec<(String, SubOpts)>,
        res: Result<CmdResult, RaftError>,
    ) {
        let failed = res.is_err();
        let (granted, retained) = match res {
            Ok(CmdResult::Subscribed { codes, retained }) => (codes, retained),
            // Applied by an earlier attempt of the same command (a leader
            // change): granted as asked; its retained messages went with the
            // lost result.
            Ok(CmdResult::Duplicate) => (filters.iter().map(|(_, o)| o.qos).collect(), Vec::new()),
            // Accepted locally during a netsplit: granted as asked; it takes
            // effect (and retained messages come) when quorum returns.
            Ok(CmdResult::Done) => (filters.iter().map(|(_, o)| o.qos).collect(), Vec::new()),
            _ => (vec![reason::UNSPECIFIED_ERROR; filters.len()], Vec::new()),
        };
        self.io.push(Packet::SubAck(codec::SubAck {
            packet_id: pid,
            reason_codes: merge_codes(codes, granted),
            ..Default::default()
        }));
        let now = now_ms();
        for d in retained {
            self.offer(d, now);
        }
        if !failed && self.broker.live.get().systree_enabled {
            self.send_sys(&filters, now);
        }
    }
}

/// SUBACK/UNSUBACK reason codes: the codes decided before proposing (invalid
/// filters) stay; the others are filled, in order, from the committed result
/// (an unspecified error if it has none).
pub fn merge_codes(decided: Vec<Option<u8>>, committed: Vec<u8>) -> Vec<u8> {
    let mut committed = committed.into_iter();
    decided
        .into_iter()
        .map(|c| c.unwrap_or_else(|| committed.next().unwrap_or(reason::UNSPECIFIED_ERROR)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn pid(o: &Outcome) -> u16 {
        match o.0 {
            Reply::PubAck(p) => p,
            _ => 0,
        }
    }

    #[tokio::test]
    async fn answers_come_in_the_order_the_commands_were_sent() {
        let mut r = Replies::new(Duration::from_secs(10));
        let (tx1, rx1) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        r.push(rx1, Reply::PubAck(1));
        r.push(rx2, Reply::PubAck(2));
        r.push_ready(Reply::PubAck(3), Ok(CmdResult::QuotaExceeded));
        let _ = tx2.send(Ok(CmdResult::Done));
        assert!(r.ready().is_none(), "the second answer waits for the first");
        let _ = tx1.send(Ok(CmdResult::Done));
        let first = r.next().await.map(|o| pid(&o));
        let rest: Vec<u16> = std::iter::from_fn(|| r.ready()).map(|o| pid(&o)).collect();
        assert_eq!((first, rest), (Some(1), vec![2, 3]));
        assert!(r.is_empty());
    }

    #[tokio::test]
    async fn with_nothing_waiting_the_next_answer_is_none_at_once() {
        // The close after a DISCONNECT drains the answers owed with
        // `while let Some(..) = next().await`: it must end.
        let mut r = Replies::new(Duration::from_secs(10));
        let (tx, rx) = oneshot::channel();
        r.push(rx, Reply::PubAck(1));
        let _ = tx.send(Ok(CmdResult::Done));
        assert!(r.next().await.is_some());
        let next = tokio::time::timeout(Duration::from_secs(1), r.next()).await;
        assert!(matches!(next, Ok(None)), "pending with nothing waiting");
    }

    #[tokio::test]
    async fn a_command_whose_sender_is_dropped_is_answered_stopped() {
        let mut r = Replies::new(Duration::from_secs(10));
        let (tx, rx) = oneshot::channel::<Result<CmdResult, RaftError>>();
        r.push(rx, Reply::PubAck(1));
        drop(tx);
        assert!(matches!(r.ready(), Some((_, Err(RaftError::Stopped)))));
    }

    #[tokio::test]
    async fn a_command_unanswered_past_the_bound_has_an_unknown_outcome() {
        let bound = Duration::from_millis(300);
        let mut r = Replies::new(bound);
        let started = Instant::now();
        let (_tx1, rx1) = oneshot::channel();
        r.push(rx1, Reply::PubAck(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_tx2, rx2) = oneshot::channel();
        r.push(rx2, Reply::PubAck(2));
        let first = r.next().await;
        assert!(matches!(
            first,
            Some((Reply::PubAck(1), Err(RaftError::Unknown(_))))
        ));
        assert!(started.elapsed() >= bound);
        // The second's own bound counts from when it was sent, not from
        // when the first was given up.
        let second = r.next().await;
        assert!(matches!(
            second,
            Some((Reply::PubAck(2), Err(RaftError::Unknown(_))))
        ));
        assert!(started.elapsed() >= bound + Duration::from_millis(100));
    }

    #[test]
    fn merged_codes_keep_decided_ones_and_fill_the_rest_in_order() {
        let decided = vec![None, Some(reason::TOPIC_FILTER_INVALID), None];
        assert_eq!(
            merge_codes(decided, vec![1, 2]),
            vec![1, reason::TOPIC_FILTER_INVALID, 2]
        );
    }

    fn published(matched: u32, duplicate: bool) -> Result<CmdResult, RaftError> {
        Ok(CmdResult::Published { matched, duplicate })
    }

    #[test]
    fn quota_exceeded_is_reason_0x97_in_mqtt5_and_a_closed_connection_in_mqtt3() {
        let res = Ok(CmdResult::QuotaExceeded);
        assert_eq!(
            publish_answer(&res, true),
            PublishAnswer::Ack(reason::QUOTA_EXCEEDED)
        );
        assert_eq!(publish_answer(&res, false), PublishAnswer::Close);
    }

    #[test]
    fn a_stored_publish_is_acknowledged_and_mqtt5_hears_of_no_subscribers() {
        assert_eq!(
            publish_answer(&published(2, false), true),
            PublishAnswer::Ack(reason::SUCCESS)
        );
        assert_eq!(
            publish_answer(&published(0, false), true),
            PublishAnswer::Ack(reason::NO_MATCHING_SUBSCRIBERS)
        );
        assert_eq!(
            publish_answer(&published(0, false), false),
            PublishAnswer::Ack(reason::SUCCESS)
        );
        assert_eq!(
            publish_answer(&published(0, true), true),
            PublishAnswer::Ack(reason::SUCCESS)
        );
        assert_eq!(
            publish_answer(&Ok(CmdResult::Duplicate), false),
            PublishAnswer::Ack(reason::SUCCESS)
        );
    }

    #[test]
    fn a_publish_refused_finally_is_0x83_in_mqtt5_and_a_closed_connection_in_mqtt3() {
        let res = Err(RaftError::NotCommitted("in netsplit".into()));
        assert_eq!(publish_answer(&res, false), PublishAnswer::NotCommitted);
        assert_eq!(
            publish_answer(&res, true),
            PublishAnswer::Ack(reason::IMPLEMENTATION_SPECIFIC_ERROR)
        );
    }

    #[test]
    fn a_publish_whose_outcome_is_unknown_is_never_answered_as_failed() {
        let res = Err(RaftError::Unknown("no result in time".into()));
        for v5 in [true, false] {
            assert_eq!(publish_answer(&res, v5), PublishAnswer::Unknown);
        }
    }

    #[test]
    fn a_stale_publish_closes_the_taken_over_connection() {
        for v5 in [true, false] {
            assert_eq!(
                publish_answer(&Ok(CmdResult::Stale), v5),
                PublishAnswer::TakenOver
            );
        }
    }

    #[test]
    fn merged_codes_without_a_committed_result_are_unspecified_errors() {
        assert_eq!(
            merge_codes(vec![None, None], vec![]),
            vec![reason::UNSPECIFIED_ERROR; 2]
        );
    }
}
