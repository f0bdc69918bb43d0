//! The targets of recently published topics, kept while the subscriptions
//! do not change: a topic with many subscribers resolves once, not once per
//! message. The trie owns it and empties it on every subscription change.
//!
//! Only a plain result is kept: one with no shared group (whose member is
//! picked per message) and no no-local subscription (whose result depends on
//! the publisher). A cached result is the one the trie would compute, in the
//! same order, so every replica applies the same state either way.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::trie::Target;

/// One target per session, in client id order.
pub type Targets = Arc<[(Arc<str>, Target)]>;

/// A result with fewer targets is cheaper to compute than to keep.
const MIN_TARGETS: usize = 16;
/// The most targets kept, over all topics (about 50 bytes each); past it the
/// cache starts over.
const MAX_TARGETS: usize = 256 * 1024;

#[derive(Debug, Default)]
pub struct Routes {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_topic: HashMap<Box<str>, Targets>,
    /// Targets held, over all topics.
    held: usize,
}

impl Routes {
    /// The targets kept for `topic`, if any.
    pub fn get(&self, topic: &str) -> Option<Targets> {
        self.inner.lock().by_topic.get(topic).cloned()
    }

    /// Keeps `targets` for `topic` if they are worth keeping.
    pub fn keep(&self, topic: &str, targets: &Targets) {
        if targets.len() < MIN_TARGETS || targets.len() > MAX_TARGETS {
            return;
        }
        let mut inner = self.inner.lock();
        if inner.held + targets.len() > MAX_TARGETS {
            *inner = Inner::default();
        }
        inner.held += targets.len();
        if let Some(old) = inner.by_topic.insert(topic.into(), targets.clone()) {
            inner.held -= old.len();
        }
    }

    /// Forgets everything: the subscriptions changed.
    pub fn clear(&mut self) {
        let inner = self.inner.get_mut();
        if inner.held > 0 {
            *inner = Inner::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(n: usize) -> Targets {
        (0..n)
            .map(|i| (Arc::from(format!("c{i}")), Target::default()))
            .collect()
    }

    #[test]
    fn a_wide_result_is_kept_and_a_narrow_one_is_not() {
        let r = Routes::default();
        r.keep("wide", &targets(MIN_TARGETS));
        r.keep("narrow", &targets(MIN_TARGETS - 1));
        assert_eq!(r.get("wide").map(|t| t.len()), Some(MIN_TARGETS));
        assert!(r.get("narrow").is_none());
    }

    #[test]
    fn clearing_forgets_every_topic() {
        let mut r = Routes::default();
        r.keep("a", &targets(MIN_TARGETS));
        r.clear();
        assert!(r.get("a").is_none());
    }

    #[test]
    fn past_its_bound_the_cache_starts_over() {
        let r = Routes::default();
        let half = targets(MAX_TARGETS / 2);
        r.keep("a", &half);
        r.keep("b", &half);
        r.keep("c", &half);
        assert!(r.get("a").is_none());
        assert!(r.get("b").is_none());
        assert!(r.get("c").is_some());
        assert_eq!(r.inner.lock().held, MAX_TARGETS / 2);
    }
}
