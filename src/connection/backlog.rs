//! Where a connection takes its session's queued (durable) deliveries from:
//! the live stream of apply events while it keeps up, or pages read from
//! RocksDB while it does not. Memory holds only the window and a bounded
//! read-ahead, however deep the queue on disk.
//!
//! Apply emits a delivery event only after the item is written (see
//! `raftmq_raft::state`), so an item announced by an event is on disk. While
//! reading, the connection ignores live events: each one it ignores came
//! before its next read, which therefore finds the item. It goes back to
//! the live stream when a read ends before its budget (it has caught up); a
//! live event that does not follow on from the last sequence taken
//! (one that was missed) sends it back to reading.

use std::collections::HashSet;

use raftmq_raft::{Delivery, QueuePage};

/// Items waiting beyond the window before the connection stops taking live
/// events and reads from disk instead.
pub const READ_AHEAD: usize = 512;
/// Items and payload bytes per read.
pub const PAGE_ITEMS: usize = 256;
pub const PAGE_BYTES: usize = 1 << 20;

pub struct Backlog {
    /// The next queue sequence this connection takes; everything below it
    /// has been taken (offered to the window).
    next: Option<u64>,
    reading: bool,
    /// Until the first catch-up, the items read may have reached the client
    /// on an earlier connection, and go out with DUP as this says. Later
    /// ones cannot have.
    dup: Dup,
}

/// Which items read go out with DUP. (The set is boxed: most connections
/// have none, and an empty set inline costs 48 B.)
enum Dup {
    /// Unknown what an earlier connection sent: all of them.
    All,
    /// Those an earlier connection on this node sent and did not see
    /// acknowledged.
    // Boxed on purpose (see above): the enum is one word, not 48 B.
    #[allow(clippy::box_collection)]
    These(Box<HashSet<u64>>),
    /// Caught up: none.
    Nothing,
}

impl Backlog {
    /// A connection that starts by reading its session's queue from its
    /// head. `sent_before`: what an earlier connection on this node sent and
    /// did not see acknowledged (`None`: unknown).
    pub fn resume(sent_before: Option<HashSet<u64>>) -> Backlog {
        Backlog {
            next: None,
            reading: true,
            dup: match sent_before {
                None => Dup::All,
                Some(s) => Dup::These(Box::new(s)),
            },
        }
    }

    /// A connection whose session is not the log's yet (registered during
    /// a netsplit): it takes nothing until its registration is applied,
    /// then resumes from the queue's head.
    pub fn idle() -> Backlog {
        Backlog {
            next: None,
            reading: false,
            dup: Dup::All,
        }
    }

    /// Whether to read a page now, with `waiting` items waiting beyond the
    /// window; and from which sequence (`None`: the queue's head).
    pub fn wants_read(&self, waiting: usize) -> Option<Option<u64>> {
        (self.reading && waiting < READ_AHEAD / 2).then_some(self.next)
    }

    /// A page read from disk: the items to offer, each with its DUP flag.
    pub fn on_page(&mut self, page: QueuePage) -> Vec<(Delivery, bool)> {
        self.reading = page.more;
        let mut out = Vec::with_capacity(page.items.len());
        for d in page.items {
            let Some(seq) = d.seq else { continue };
            if self.next.is_some_and(|n| seq < n) {
                continue;
            }
            self.next = Some(seq + 1);
            let dup = match &self.dup {
                Dup::All => true,
                Dup::These(s) => s.contains(&seq),
                Dup::Nothing => false,
            };
            out.push((d, dup));
        }
        // Once caught up, nothing later was sent before.
        if !self.reading {
            self.dup = Dup::Nothing;
        }
        out
    }

    /// A durable delivery from apply, with `waiting` items waiting beyond
    /// the window: the delivery to offer, or `None` when it is a repeat, or
    /// is left on disk for a later read.
    pub fn on_live(&mut self, d: Delivery, waiting: usize) -> Option<Delivery> {
        let seq = d.seq?;
        if self.reading || self.next.is_some_and(|n| seq < n) {
            return None;
        }
        let follows = self.next.is_none_or(|n| seq == n);
        if !follows || waiting >= READ_AHEAD {
            self.reading = true;
            return None;
        }
        self.next = Some(seq + 1);
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use raftmq_raft::Message;

    use super::*;

    fn item(seq: u64) -> Delivery {
        let msg = Arc::new(Message::system("t".into(), "p".into(), false, 0));
        Delivery {
            seq: Some(seq),
            ..Delivery::live(msg, 1, false, Vec::new())
        }
    }

    /// A page that ended before its budget: the end of the queue.
    fn page(seqs: std::ops::Range<u64>) -> QueuePage {
        QueuePage {
            items: seqs.map(item).collect(),
            more: false,
        }
    }

    /// A page cut by its item or byte budget.
    fn cut(seqs: std::ops::Range<u64>) -> QueuePage {
        QueuePage {
            more: true,
            ..page(seqs)
        }
    }

    fn seqs(v: &[(Delivery, bool)]) -> Vec<u64> {
        v.iter().filter_map(|(d, _)| d.seq).collect()
    }

    #[test]
    fn a_new_connection_reads_from_the_head_and_ignores_live_events_until_caught_up() {
        let mut b = Backlog::resume(Some(HashSet::new()));
        assert_eq!(b.wants_read(0), Some(None));
        assert!(b.on_live(item(7), 0).is_none());
        let got = b.on_page(page(5..8));
        assert_eq!(seqs(&got), [5, 6, 7]);
        assert_eq!(b.wants_read(0), None);
        assert_eq!(b.on_live(item(7), 0).map(|d| d.seq), None, "a repeat");
        assert_eq!(b.on_live(item(8), 0).and_then(|d| d.seq), Some(8));
    }

    #[test]
    fn a_full_page_keeps_reading_from_after_its_last_item() {
        let mut b = Backlog::resume(Some(HashSet::new()));
        let n = PAGE_ITEMS as u64;
        assert_eq!(b.on_page(cut(0..n)).len(), PAGE_ITEMS);
        assert_eq!(b.wants_read(0), Some(Some(n)));
        assert_eq!(b.wants_read(READ_AHEAD), None, "the read-ahead is full");
        assert!(b.on_live(item(n + 5), 0).is_none());
        assert_eq!(seqs(&b.on_page(page(n..n + 3))), [n, n + 1, n + 2]);
        assert_eq!(b.wants_read(0), None);
    }

    #[test]
    fn a_page_cut_by_its_byte_budget_is_not_the_end_of_the_queue() {
        let mut b = Backlog::resume(Some(HashSet::new()));
        assert_eq!(b.on_page(cut(0..3)).len(), 3);
        assert_eq!(b.wants_read(0), Some(Some(3)));
    }

    #[test]
    fn a_slow_subscriber_goes_to_disk_when_its_read_ahead_is_full_and_back_when_caught_up() {
        let mut b = Backlog::resume(Some(HashSet::new()));
        b.on_page(page(0..0));
        assert!(b.on_live(item(0), 0).is_some());
        assert!(b.on_live(item(1), READ_AHEAD).is_none());
        assert!(b.on_live(item(2), 0).is_none(), "reading: left on disk");
        assert_eq!(b.wants_read(0), Some(Some(1)));
        assert_eq!(seqs(&b.on_page(page(1..3))), [1, 2]);
        assert!(b.on_live(item(3), 0).is_some());
    }

    #[test]
    fn a_missed_live_event_sends_the_connection_back_to_disk() {
        let mut b = Backlog::resume(Some(HashSet::new()));
        b.on_page(page(0..2));
        assert!(b.on_live(item(3), 0).is_none());
        assert_eq!(b.wants_read(0), Some(Some(2)));
    }

    #[test]
    fn items_queued_before_the_connection_get_dup_only_if_they_may_have_been_sent() {
        let mut b = Backlog::resume(Some([4u64].into_iter().collect()));
        let got = b.on_page(page(3..6));
        assert_eq!(
            got.iter().map(|(_, dup)| *dup).collect::<Vec<_>>(),
            [false, true, false]
        );
        let mut unknown = Backlog::resume(None);
        assert!(unknown.on_page(page(3..5)).iter().all(|(_, dup)| *dup));
        assert!(!unknown.on_page(page(5..6)).iter().any(|(_, dup)| *dup));
    }
}
