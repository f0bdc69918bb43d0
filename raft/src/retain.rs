//! The retained-message index: a trie of topic levels, so that a new
//! subscription finds its retained messages by walking only the branches its
//! filter can match, instead of testing every retained topic. Matching follows
//! the MQTT rules of [`crate::trie::filter_matches`]: `+` is one level, `#` the
//! rest including the parent, and a wildcard in the first level never matches
//! a topic starting with `$`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::command::Message;

#[derive(Default, Debug)]
struct Node {
    /// Ordered, so matches come out in topic order on every replica.
    children: BTreeMap<Box<str>, Node>,
    msg: Option<Arc<Message>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.msg.is_none()
    }

    fn collect_all(&self, out: &mut Vec<Arc<Message>>) {
        out.extend(self.msg.clone());
        for child in self.children.values() {
            child.collect_all(out);
        }
    }
}

#[derive(Default, Debug)]
pub struct RetainedIndex {
    root: Node,
    len: usize,
}

impl RetainedIndex {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets the retained message of `msg.topic`.
    pub fn insert(&mut self, msg: Arc<Message>) {
        let mut node = &mut self.root;
        for level in msg.topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        if node.msg.replace(msg).is_none() {
            self.len += 1;
        }
    }

    /// Deletes the retained message of `topic`; true if there was one.
    pub fn remove(&mut self, topic: &str) -> bool {
        let levels: Vec<&str> = topic.split('/').collect();
        let removed = Self::remove_at(&mut self.root, &levels);
        if removed {
            self.len -= 1;
        }
        removed
    }

    fn remove_at(node: &mut Node, levels: &[&str]) -> bool {
        match levels.split_first() {
            None => node.msg.take().is_some(),
            Some((first, rest)) => {
                let Some(child) = node.children.get_mut(*first) else {
                    return false;
                };
                let removed = Self::remove_at(child, rest);
                if child.is_empty() {
                    node.children.remove(*first);
                }
                removed
            }
        }
    }

    /// Every retained message whose topic matches `filter` (not shared).
    pub fn matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut out = Vec::new();
        Self::walk(&self.root, &levels, true, &mut out);
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        out
    }

    fn walk(node: &Node, levels: &[&str], first: bool, out: &mut Vec<Arc<Message>>) {
        let Some((level, rest)) = levels.split_first() else {
            out.extend(node.msg.clone());
            return;
        };
        // `$` topics are not matched by a wildcard in the first level.
        let visible = |name: &str| !(first && name.starts_with('$'));
        match *level {
            "#" => {
                // The parent itself ("a/#" matches "a"), then everything below.
                if !first {
                    out.extend(node.msg.clone());
                }
                for (_, child) in node.children.iter().filter(|(n, _)| visible(n)) {
                    child.collect_all(out);
                }
            }
            "+" => {
                for (_, child) in node.children.iter().filter(|(n, _)| visible(n)) {
                    Self::walk(child, rest, false, out);
                }
            }
            exact => {
                if let Some(child) = node.children.get(exact) {
                    Self::walk(child, rest, false, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::MsgProps;
    use crate::trie::filter_matches;

    fn msg(topic: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(b"r"),
            qos: 0,
            retain: true,
            publisher: "".into(),
            props: MsgProps::default(),
            created_ms: 0,
            expires_ms: None,
        })
    }

    const TOPICS: &[&str] = &[
        "a", "a/b", "a/b/c", "a/c", "a/b/c/d", "b", "/", "/a", "a/", "$SYS/x", "$SYS/x/y",
        "$other", "a//b",
    ];
    const FILTERS: &[&str] = &[
        "#",
        "+",
        "a",
        "a/#",
        "a/+",
        "a/+/c",
        "+/b",
        "+/+",
        "/#",
        "+/#",
        "$SYS/#",
        "$SYS/+",
        "a/b/#",
        "a//b",
        "+//+",
        "nomatch/#",
        "a/b/c/d/#",
    ];

    #[test]
    fn matching_agrees_with_the_reference_matcher() {
        let mut idx = RetainedIndex::default();
        for t in TOPICS {
            idx.insert(msg(t));
        }
        for f in FILTERS {
            let got: Vec<String> = idx.matching(f).iter().map(|m| m.topic.clone()).collect();
            let mut want: Vec<String> = TOPICS
                .iter()
                .filter(|t| filter_matches(f, t))
                .map(|t| t.to_string())
                .collect();
            want.sort();
            assert_eq!(got, want, "filter {f}");
        }
    }

    #[test]
    fn replace_and_remove_keep_the_count_and_prune() {
        let mut idx = RetainedIndex::default();
        idx.insert(msg("x/y"));
        idx.insert(msg("x/y"));
        assert_eq!(idx.len(), 1);
        assert!(idx.remove("x/y"));
        assert!(!idx.remove("x/y"));
        assert!(idx.is_empty() && idx.root.is_empty());
    }
}
