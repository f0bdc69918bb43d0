//! The subscription index: a trie of topic filter levels. Each node holds the
//! plain subscribers of the filter ending there and its shared subscription
//! groups (`$share/<group>/<filter>`). Matching follows MQTT: `+` matches one
//! level, `#` the rest (including the parent), and wildcards at the first level
//! never match topics starting with `$`. Results worth keeping are kept
//! ([`crate::routes`]) until the subscriptions change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::command::{Delivery, Message, SubOpts};
use crate::routes::{Routes, Targets};

/// A matching subscription.
#[derive(Debug, Clone)]
pub enum Match<'a> {
    Plain(&'a Arc<str>, &'a SubOpts),
    /// A shared group: its name and members in a fixed (sorted) order.
    Shared(&'a Arc<str>, &'a BTreeMap<Arc<str>, SubOpts>),
}

#[derive(Default, Debug)]
struct Node {
    children: HashMap<Box<str>, Node>,
    subs: HashMap<Arc<str>, SubOpts>,
    shared: BTreeMap<Arc<str>, BTreeMap<Arc<str>, SubOpts>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subs.is_empty() && self.shared.is_empty()
    }
}

/// One session's merged view of the subscriptions a message matched:
/// overlapping subscriptions merge into one delivery at the highest QoS,
/// carrying every subscription identifier.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Target {
    pub qos: u8,
    pub retain_as_published: bool,
    pub sub_ids: Vec<u32>,
}

impl Target {
    /// The QoS and retain flag `msg` goes to this target with: the lower of
    /// the two QoS, and retained only where the subscription keeps the flag
    /// as published.
    pub fn grant(&self, msg: &Message) -> (u8, bool) {
        (
            msg.qos.min(self.qos),
            msg.retain && self.retain_as_published,
        )
    }

    /// `msg` as delivered live (not queued) to this target.
    pub fn live_delivery(&self, msg: &Arc<Message>) -> Delivery {
        let (qos, retain) = self.grant(msg);
        Delivery::live(msg.clone(), qos, retain, self.sub_ids.clone())
    }

    fn merge(&mut self, o: &SubOpts) {
        self.qos = self.qos.max(o.qos);
        self.retain_as_published |= o.retain_as_published;
        if let Some(id) = o.sub_id {
            if !self.sub_ids.contains(&id) {
                self.sub_ids.push(id);
            }
        }
    }
}

#[derive(Default, Debug)]
pub struct Trie {
    root: Node,
    len: usize,
    /// Which node each connected session's client is on (for routing QoS 0
    /// to other nodes and for picking shared-group members anywhere).
    locations: HashMap<Arc<str>, u64>,
    /// Results of [`Trie::targets`] kept since the last subscription change.
    routes: Routes,
}

/// Splits `$share/<group>/<filter>` into (Some(group), filter).
pub fn split_shared(filter: &str) -> (Option<&str>, &str) {
    if let Some(rest) = filter.strip_prefix("$share/") {
        if let Some((group, f)) = rest.split_once('/') {
            return (Some(group), f);
        }
    }
    (None, filter)
}

/// A valid topic filter (after removing any `$share/<group>/` prefix).
pub fn valid_filter(filter: &str) -> bool {
    if let Some(rest) = filter.strip_prefix("$share/") {
        let Some((group, f)) = rest.split_once('/') else {
            return false;
        };
        if group.is_empty() || group.contains(['+', '#']) {
            return false;
        }
        return valid_plain_filter(f);
    }
    valid_plain_filter(filter)
}

fn valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > 65535 || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, l) in levels.iter().enumerate() {
        if l.contains('#') && (*l != "#" || i != levels.len() - 1) {
            return false;
        }
        if l.contains('+') && *l != "+" {
            return false;
        }
    }
    true
}

/// A valid topic name for PUBLISH.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= 65535 && !topic.contains(['+', '#', '\0'])
}

/// Does `filter` (not shared) match `topic`?
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    let mut first = true;
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return !(first && topic.starts_with('$')),
            (Some("+"), Some(_)) => {
                if first && topic.starts_with('$') {
                    return false;
                }
            }
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

impl Trie {
    /// Records where `client` is connected (None: not connected).
    pub fn set_location(&mut self, client: &Arc<str>, node: Option<u64>) {
        match node {
            Some(n) => {
                self.locations.insert(client.clone(), n);
            }
            None => {
                self.locations.remove(client);
            }
        }
    }

    /// The node `client` is connected to, if any.
    pub fn location(&self, client: &str) -> Option<u64> {
        self.locations.get(client).copied()
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces a subscription; returns true if it already existed.
    pub fn insert(&mut self, filter: &str, client: &Arc<str>, opts: SubOpts) -> bool {
        let (group, f) = split_shared(filter);
        let mut node = &mut self.root;
        for level in f.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        self.routes.clear();
        let existed = match group {
            None => node.subs.insert(client.clone(), opts).is_some(),
            Some(g) => node
                .shared
                .entry(Arc::from(g))
                .or_default()
                .insert(client.clone(), opts)
                .is_some(),
        };
        if !existed {
            self.len += 1;
        }
        existed
    }

    /// Removes a subscription; returns true if it existed.
    pub fn remove(&mut self, filter: &str, client: &str) -> bool {
        let (group, f) = split_shared(filter);
        let levels: Vec<&str> = f.split('/').collect();
        let removed = Self::remove_at(&mut self.root, &levels, group, client);
        if removed {
            self.len -= 1;
            self.routes.clear();
        }
        removed
    }

    fn remove_at(node: &mut Node, levels: &[&str], group: Option<&str>, client: &str) -> bool {
        match levels.split_first() {
            None => match group {
                None => node.subs.remove(client).is_some(),
                Some(g) => {
                    let Some(members) = node.shared.get_mut(g) else {
                        return false;
                    };
                    let removed = members.remove(client).is_some();
                    if members.is_empty() {
                        node.shared.remove(g);
                    }
                    removed
                }
            },
            Some((first, rest)) => {
                let Some(child) = node.children.get_mut(*first) else {
                    return false;
                };
                let removed = Self::remove_at(child, rest, group, client);
                if child.is_empty() {
                    node.children.remove(*first);
                }
                removed
            }
        }
    }

    /// Calls `f` for every subscription matching `topic`.
    pub fn matches<'a>(&'a self, topic: &str, f: &mut impl FnMut(Match<'a>)) {
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        Self::walk(&self.root, &levels, 0, dollar, f);
    }

    /// Resolves every subscription matching `topic` to one target per
    /// session, in client id order. Plain subscriptions with no-local skip
    /// `publisher`; each shared group delivers to the one member `pick`
    /// chooses (members come in a fixed order, so a deterministic `pick`
    /// gives a deterministic result). A result that depends on neither is
    /// kept for the topic's next message.
    pub fn targets(
        &self,
        topic: &str,
        publisher: &str,
        mut pick: impl FnMut(&BTreeMap<Arc<str>, SubOpts>) -> Option<Arc<str>>,
    ) -> Targets {
        if let Some(kept) = self.routes.get(topic) {
            return kept;
        }
        let mut plain = true;
        let mut out: BTreeMap<Arc<str>, Target> = BTreeMap::new();
        self.matches(topic, &mut |m| match m {
            Match::Plain(c, o) => {
                plain &= !o.no_local;
                if !(o.no_local && **c == *publisher) {
                    out.entry(c.clone()).or_default().merge(o);
                }
            }
            Match::Shared(_, members) => {
                plain = false;
                if let Some(c) = pick(members) {
                    if let Some(o) = members.get(&c) {
                        let mut o = *o;
                        o.retain_as_published = false;
                        out.entry(c).or_default().merge(&o);
                    }
                }
            }
        });
        let targets: Targets = out.into_iter().collect();
        if plain {
            self.routes.keep(topic, &targets);
        }
        targets
    }

    fn emit<'a>(node: &'a Node, f: &mut impl FnMut(Match<'a>)) {
        for (c, o) in &node.subs {
            f(Match::Plain(c, o));
        }
        for (g, m) in &node.shared {
            f(Match::Shared(g, m));
        }
    }

    fn walk<'a>(
        node: &'a Node,
        levels: &[&str],
        i: usize,
        dollar: bool,
        f: &mut impl FnMut(Match<'a>),
    ) {
        let wild_ok = !(i == 0 && dollar);
        if wild_ok {
            if let Some(hash) = node.children.get("#") {
                Self::emit(hash, f);
            }
        }
        if i == levels.len() {
            Self::emit(node, f);
            return;
        }
        if let Some(child) = node.children.get(levels[i]) {
            Self::walk(child, levels, i + 1, dollar, f);
        }
        if wild_ok {
            if let Some(plus) = node.children.get("+") {
                Self::walk(plus, levels, i + 1, dollar, f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(t: &Trie, topic: &str) -> Vec<String> {
        let mut v = Vec::new();
        t.matches(topic, &mut |m| match m {
            Match::Plain(c, _) => v.push(c.to_string()),
            Match::Shared(g, _) => v.push(format!("share:{g}")),
        });
        v.sort();
        v
    }

    #[test]
    fn wildcards_match_as_the_spec_says() {
        let mut t = Trie::default();
        for (f, c) in [
            ("a/b", "exact"),
            ("a/+", "plus"),
            ("a/#", "hash"),
            ("#", "all"),
            ("+/+", "pp"),
        ] {
            t.insert(f, &Arc::from(c), SubOpts::with_qos(1));
        }
        assert_eq!(clients(&t, "a/b"), ["all", "exact", "hash", "plus", "pp"]);
        assert_eq!(clients(&t, "a"), ["all", "hash"]);
        assert_eq!(clients(&t, "a/b/c"), ["all", "hash"]);
        assert_eq!(clients(&t, "$SYS/x"), Vec::<String>::new());
    }

    #[test]
    fn remove_prunes_and_reports_existence() {
        let mut t = Trie::default();
        let c: Arc<str> = Arc::from("c");
        assert!(!t.insert("x/y", &c, SubOpts::with_qos(0)));
        assert!(t.insert("x/y", &c, SubOpts::with_qos(1)));
        assert!(t.remove("x/y", "c"));
        assert!(!t.remove("x/y", "c"));
        assert!(t.root.is_empty());
    }

    #[test]
    fn shared_groups_are_reported_once_per_group() {
        let mut t = Trie::default();
        t.insert("$share/g/t/#", &Arc::from("a"), SubOpts::with_qos(1));
        t.insert("$share/g/t/#", &Arc::from("b"), SubOpts::with_qos(1));
        assert_eq!(clients(&t, "t/1"), ["share:g"]);
    }

    fn ids(t: &Targets) -> Vec<String> {
        t.iter().map(|(c, _)| c.to_string()).collect()
    }

    fn no_pick(_: &BTreeMap<Arc<str>, SubOpts>) -> Option<Arc<str>> {
        None
    }

    /// A trie with `n` plain subscribers of `t`, named s00, s01, ...
    fn fan(n: usize) -> Trie {
        let mut t = Trie::default();
        for i in 0..n {
            t.insert("t", &Arc::from(format!("s{i:02}")), SubOpts::with_qos(1));
        }
        t
    }

    #[test]
    fn the_next_message_after_a_subscription_change_sees_it() {
        let mut t = fan(20);
        assert_eq!(t.targets("t", "p", no_pick).len(), 20);
        t.insert("#", &Arc::from("late"), SubOpts::with_qos(1));
        assert!(ids(&t.targets("t", "p", no_pick)).contains(&"late".to_string()));
        t.remove("t", "s00");
        let after = ids(&t.targets("t", "p", no_pick));
        assert_eq!(after.len(), 20);
        assert!(!after.contains(&"s00".to_string()));
        t.insert("t", &Arc::from("s01"), SubOpts::with_qos(0));
        let s01 = t.targets("t", "p", no_pick);
        let s01 = s01.iter().find(|(c, _)| &**c == "s01").map(|(_, o)| o.qos);
        assert_eq!(s01, Some(0), "a replaced subscription's QoS");
    }

    #[test]
    fn a_no_local_subscriber_misses_only_its_own_messages_on_a_wide_topic() {
        let mut t = fan(20);
        let mut own = SubOpts::with_qos(1);
        own.no_local = true;
        t.insert("t", &Arc::from("s05"), own);
        assert!(!ids(&t.targets("t", "s05", no_pick)).contains(&"s05".to_string()));
        assert!(ids(&t.targets("t", "s06", no_pick)).contains(&"s05".to_string()));
        assert!(!ids(&t.targets("t", "s05", no_pick)).contains(&"s05".to_string()));
    }

    #[test]
    fn a_shared_group_picks_a_member_for_every_message_on_a_wide_topic() {
        let mut t = fan(20);
        for m in ["m1", "m2"] {
            t.insert("$share/g/t", &Arc::from(m), SubOpts::with_qos(1));
        }
        let mut turn = 0;
        let mut pick = |members: &BTreeMap<Arc<str>, SubOpts>| {
            turn += 1;
            members.keys().nth(turn % 2).cloned()
        };
        let first = ids(&t.targets("t", "p", &mut pick));
        let second = ids(&t.targets("t", "p", &mut pick));
        assert!(first.contains(&"m2".to_string()), "{first:?}");
        assert!(second.contains(&"m1".to_string()), "{second:?}");
    }

    #[test]
    fn filter_validation() {
        for ok in ["a", "a/+/b", "#", "a/#", "+", "$share/g/a/#", "/"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in [
            "",
            "a/#/b",
            "a+",
            "a/b#",
            "$share/g",
            "$share//a",
            "$share/g+/a",
        ] {
            assert!(!valid_filter(bad), "{bad}");
        }
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(filter_matches("a/#", "a"));
        assert!(!filter_matches("+/x", "$SYS/x"));
    }
}
