//! The watermark of an alarm: raised below its limit, cleared at the limit
//! plus a tenth.

/// An alarm's change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Raised,
    Cleared,
}

/// Raise below `limit` free bytes; clear only at `limit` + 10% (hysteresis,
/// so a compaction or a flush does not make the alarm flap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    limit: u64,
    clear_at: u64,
    raised: bool,
}

impl Watermark {
    /// Not raised. A limit of 0 never raises.
    pub fn new(limit: u64) -> Watermark {
        Watermark {
            limit,
            clear_at: limit.saturating_add(limit / 10),
            raised: false,
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn raised(&self) -> bool {
        self.raised
    }

    /// Raises the alarm whatever the last reading: a publish found no room
    /// above the limit for itself. It clears as usual.
    pub fn raise(&mut self) -> Option<Change> {
        (!std::mem::replace(&mut self.raised, true)).then_some(Change::Raised)
    }

    /// Takes a reading of the free bytes; the change it makes, if any.
    pub fn observe(&mut self, free: u64) -> Option<Change> {
        if !self.raised && free < self.limit {
            self.raised = true;
            Some(Change::Raised)
        } else if self.raised && free >= self.clear_at {
            self.raised = false;
            Some(Change::Cleared)
        } else {
            None
        }
    }
}
