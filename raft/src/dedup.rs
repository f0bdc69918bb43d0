//! Command-id deduplication for apply.
//!
//! Every command carries an id: (origin node, sequence number from that
//! node's proposer). A proposer resends a batch whose outcome it did not learn
//! (the leader changed, a forwarded reply was lost), so the same command can
//! reach the log twice. Apply must run it once. Per origin we keep the exact
//! set of applied sequence numbers above a floor, as sorted ranges; the
//! proposer raises the floor (carried in every request) once everything below
//! it has been resolved, so the set stays a handful of ranges.
//!
//! An exact set, not a high-water mark: after a leader change a later batch
//! can be committed before a resent earlier one, and a high-water mark would
//! drop the earlier batch as a duplicate.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Applied sequence numbers of one origin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Everything below was resolved by the proposer: treated as applied.
    floor: u64,
    /// Inclusive, sorted, disjoint, non-adjacent ranges at or above `floor`.
    ranges: Vec<(u64, u64)>,
}

impl Seen {
    pub fn contains(&self, seq: u64) -> bool {
        if seq < self.floor {
            return true;
        }
        // Fast path: the newest range.
        match self.ranges.last() {
            None => false,
            Some(&(_, hi)) if seq > hi => false,
            _ => {
                let i = self.ranges.partition_point(|&(_, hi)| hi < seq);
                self.ranges.get(i).is_some_and(|&(lo, _)| lo <= seq)
            }
        }
    }

    /// Records `seq` as applied. Returns false if it already was.
    pub fn insert(&mut self, seq: u64) -> bool {
        if self.contains(seq) {
            return false;
        }
        // Fast path: extends the newest range.
        if let Some(last) = self.ranges.last_mut() {
            if last.1 + 1 == seq {
                last.1 = seq;
                return true;
            }
        }
        let i = self.ranges.partition_point(|&(_, hi)| hi < seq);
        self.ranges.insert(i, (seq, seq));
        // Merge with neighbours that now touch.
        if i + 1 < self.ranges.len() && self.ranges[i].1 + 1 == self.ranges[i + 1].0 {
            self.ranges[i].1 = self.ranges[i + 1].1;
            self.ranges.remove(i + 1);
        }
        if i > 0 && self.ranges[i - 1].1 + 1 == self.ranges[i].0 {
            self.ranges[i - 1].1 = self.ranges[i].1;
            self.ranges.remove(i);
        }
        true
    }

    /// Forgets ids below `floor` (never lowers it).
    pub fn raise_floor(&mut self, floor: u64) {
        if floor <= self.floor {
            return;
        }
        self.floor = floor;
        self.ranges.retain(|&(_, hi)| hi >= floor);
        if let Some(first) = self.ranges.first_mut() {
            first.0 = first.0.max(floor);
        }
    }

    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }
}

/// The applied-id sets of every origin.
pub type Dedup = HashMap<u64, Seen>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_is_seen_once_in_any_order() {
        let mut s = Seen::default();
        for q in [5, 3, 4, 10, 1, 2, 9] {
            assert!(s.insert(q), "{q} first time");
        }
        for q in [1, 2, 3, 4, 5, 9, 10] {
            assert!(s.contains(q));
            assert!(!s.insert(q), "{q} second time");
        }
        for q in [6, 7, 8, 11] {
            assert!(!s.contains(q), "{q} never inserted");
        }
        assert_eq!(s.ranges, vec![(1, 5), (9, 10)]);
    }

    #[test]
    fn a_later_batch_applied_first_does_not_hide_an_earlier_one() {
        let mut s = Seen::default();
        for q in 11..=20 {
            s.insert(q);
        }
        for q in 1..=10 {
            assert!(s.insert(q), "resent earlier batch applies: {q}");
        }
        assert_eq!(s.ranges, vec![(1, 20)]);
    }

    #[test]
    fn the_floor_bounds_the_set_and_treats_older_ids_as_seen() {
        let mut s = Seen::default();
        for q in [1, 2, 3, 7, 8, 12] {
            s.insert(q);
        }
        s.raise_floor(8);
        assert_eq!(s.ranges, vec![(8, 8), (12, 12)]);
        assert!(s.contains(5), "below the floor counts as resolved");
        assert!(!s.contains(9));
        s.raise_floor(2);
        assert!(s.contains(7), "the floor never goes down");
    }

    #[test]
    fn matches_a_reference_set_on_random_input() {
        use std::collections::BTreeSet;
        let mut x: u64 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut s = Seen::default();
        let mut r = BTreeSet::new();
        let mut floor = 0;
        for _ in 0..20_000 {
            let v = next();
            if v % 50 == 0 {
                floor += v % 7;
                s.raise_floor(floor);
                r.retain(|&q| q >= floor);
            } else {
                let q = floor + next() % 200;
                let fresh = !r.contains(&q) && q >= floor;
                assert_eq!(s.insert(q), fresh);
                r.insert(q);
            }
            let probe = floor + next() % 200;
            assert_eq!(s.contains(probe), r.contains(&probe));
        }
    }
}
