//! The ACL: rule lines parsed, and the decision for one publish or
//! subscribe. One rule per line:
//!
//! ```text
//! allow|deny  all|anonymous|user NAME|client ID|addr CIDR  publish|subscribe|both  PATTERN
//! ```
//!
//! A line whose first non-blank character is `#` is a comment (a `#`
//! later in a line is the wildcard). `PATTERN` is a topic filter in which `%u` stands for the client's user
//! name and `%c` for its client id (a rule with `%u` never matches an
//! anonymous client, and neither placeholder matches a value holding `/`,
//! `+` or `#`). Rules are read in order; the first whose subject, access
//! and pattern match decides. For a publish the pattern must match the
//! topic. For a subscribe an `allow` rule must cover every topic the filter
//! can match, and a `deny` rule applies as soon as the two can match a
//! common topic. When no rule matches, `acl_nomatch` decides (`$SYS`
//! filters excepted, see [`super::Auth::may_subscribe`]).

use std::net::IpAddr;

use raftmq_raft::trie::filter_matches;

use super::Identity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Publish,
    Subscribe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    All,
    Anonymous,
    User(String),
    Client(String),
    Addr(IpAddr, u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    allow: bool,
    subject: Subject,
    publish: bool,
    subscribe: bool,
    pattern: String,
}

/// Parsed rules, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ACL line {line}: {message}")]
pub struct AclError {
    pub line: usize,
    pub message: String,
}

impl Acl {
    /// Parses rule lines; the error names the first bad line.
    pub fn parse(text: &str) -> Result<Acl, AclError> {
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            // Only a whole line is a comment: `#` in a pattern is a wildcard.
            if raw.trim_start().starts_with('#') {
                continue;
            }
            let line = raw;
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            let err = |message: String| AclError {
                line: i + 1,
                message,
            };
            rules.push(parse_rule(&words).map_err(err)?);
        }
        Ok(Acl { rules })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first matching rule's verdict (`Some(true)`: allowed), or `None`
    /// when no rule matches. `target` is the topic (publish) or the filter
    /// (subscribe, without any `$share/GROUP/` prefix).
    pub fn decide(&self, who: &Identity, access: Access, target: &str) -> Option<bool> {
        self.rules
            .iter()
            .find(|r| r.applies(who, access, target))
            .map(|r| r.allow)
    }
}

fn parse_rule(words: &[&str]) -> Result<Rule, String> {
    let allow = match words[0] {
        "allow" => true,
        "deny" => false,
        w => return Err(format!("expected `allow` or `deny`, got `{w}`")),
    };
    let (subject, rest) = match words.get(1).copied() {
        Some("all") => (Subject::All, &words[2..]),
        Some("anonymous") => (Subject::Anonymous, &words[2..]),
        Some(kind @ ("user" | "client" | "addr")) => {
            let v = words
                .get(2)
                .ok_or_else(|| format!("`{kind}` needs a value"))?;
            let s = match kind {
                "user" => Subject::User(v.to_string()),
                "client" => Subject::Client(v.to_string()),
                _ => {
                    let (ip, bits) = cidr(v)?;
                    Subject::Addr(ip, bits)
                }
            };
            (s, &words[3..])
        }
        other => {
            return Err(format!(
                "expected all, anonymous, user NAME, client ID or addr CIDR, got {other:?}"
            ))
        }
    };
    let (publish, subscribe) = match rest.first().copied() {
        Some("publish") => (true, false),
        Some("subscribe") => (false, true),
        Some("both") => (true, true),
        other => {
            return Err(format!(
                "expected publish, subscribe or both, got {other:?}"
            ))
        }
    };
    let pattern = match &rest[1..] {
        [p] => p.to_string(),
        [] => return Err("a topic pattern is missing".into()),
        more => return Err(format!("unexpected words after the pattern: {more:?}")),
    };
    if !raftmq_raft::trie::valid_filter(&pattern) {
        return Err(format!("`{pattern}` is not a valid topic filter"));
    }
    Ok(Rule {
        allow,
        subject,
        publish,
        subscribe,
        pattern,
    })
}

/// `10.0.0.0/8`, `::1/128` or a bare address (all bits).
fn cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, b)) => (ip, Some(b)),
        None => (s, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("`{s}` is not an address or address range"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => b
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("`{s}`: the prefix length must be 0..={max}"))?,
        None => max,
    };
    Ok((ip, bits))
}

fn in_range(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        a => a,
    };
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - bits as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl Rule {
    fn applies(&self, who: &Identity, access: Access, target: &str) -> bool {
        let access_ok = match access {
            Access::Publish => self.publish,
            Access::Subscribe => self.subscribe,
        };
        if !access_ok || !self.subject_is(who) {
            return false;
        }
        let Some(pattern) = substitute(&self.pattern, who) else {
            return false;
        };
        match (access, self.allow) {
            (Access::Publish, _) => filter_matches(&pattern, target),
            (Access::Subscribe, true) => covers(&pattern, target),
            (Access::Subscribe, false) => overlaps(&pattern, target),
        }
    }

    fn subject_is(&self, who: &Identity) -> bool {
        match &self.subject {
            Subject::All => true,
            Subject::Anonymous => who.user.is_none(),
            Subject::User(u) => who.user.as_deref() == Some(u.as_str()),
            Subject::Client(c) => *who.client_id == **c,
            Subject::Addr(net, bits) => who.addr.is_some_and(|a| in_range(a, *net, *bits)),
        }
    }
}

/// `%u` and `%c` replaced; `None` if the pattern needs a value the client
/// lacks or has one that would act as a wildcard or a level separator.
fn substitute(pattern: &str, who: &Identity) -> Option<String> {
    let unsafe_value = |v: &str| v.contains(['/', '+', '#']) || v.is_empty();
    let mut p = pattern.to_string();
    if p.contains("%u") {
        let u = who.user.as_deref().filter(|u| !unsafe_value(u))?;
        p = p.replace("%u", u);
    }
    if p.contains("%c") {
        if unsafe_value(&who.client_id) {
            return None;
        }
        p = p.replace("%c", &who.client_id);
    }
    Some(p)
}

/// Does `pattern` match every topic that `filter` matches?
pub fn covers(pattern: &str, filter: &str) -> bool {
    let mut p = pattern.split('/');
    let mut f = filter.split('/');
    loop {
        match (p.next(), f.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(fl)) if fl != "#" => {}
            (Some(pl), Some(fl)) if pl == fl && fl != "+" && fl != "#" => {}
            _ => return false,
        }
    }
}

/// Can `a` and `b` (two filters) match a common topic?
pub fn overlaps(a: &str, b: &str) -> bool {
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(l), Some(r)) if l == r => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: Option<&str>, client: &str, addr: &str) -> Identity {
        Identity {
            user: user.map(str::to_string),
            client_id: client.into(),
            addr: addr.parse().ok(),
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_no_match_is_none() {
        let acl = Acl::parse(
            "# sensors\n\
             deny user alice publish sensors/secret\n\
             allow user alice both sensors/#\n",
        )
        .unwrap();
        let alice = who(Some("alice"), "c1", "127.0.0.1");
        assert_eq!(acl.decide(&alice, Access::Publish, "sensors/t"), Some(true));
        assert_eq!(
            acl.decide(&alice, Access::Publish, "sensors/secret"),
            Some(false)
        );
        assert_eq!(acl.decide(&alice, Access::Publish, "other"), None);
        let bob = who(Some("bob"), "c2", "127.0.0.1");
        assert_eq!(acl.decide(&bob, Access::Publish, "sensors/t"), None);
    }

    #[test]
    fn user_and_client_placeholders_are_replaced_by_the_clients_own() {
        let acl = Acl::parse("allow all both home/%u/%c/#\ndeny all both home/#\n").unwrap();
        let a = who(Some("ann"), "phone", "10.0.0.1");
        assert_eq!(
            acl.decide(&a, Access::Publish, "home/ann/phone/t"),
            Some(true)
        );
        assert_eq!(
            acl.decide(&a, Access::Publish, "home/bob/phone/t"),
            Some(false)
        );
        // Anonymous: `%u` has no value, the rule does not match.
        let anon = who(None, "phone", "10.0.0.1");
        assert_eq!(
            acl.decide(&anon, Access::Publish, "home/ann/phone/t"),
            Some(false)
        );
        // A client id that is a wildcard does not widen the rule.
        let sly = who(Some("ann"), "#", "10.0.0.1");
        assert_eq!(
            acl.decide(&sly, Access::Publish, "home/ann/x/t"),
            Some(false)
        );
    }

    #[test]
    fn address_ranges_match_clients_inside_them_only() {
        let acl = Acl::parse("allow addr 10.1.0.0/16 publish t\ndeny all publish t\n").unwrap();
        let inside = who(None, "c", "10.1.200.3");
        let outside = who(None, "c", "10.2.0.1");
        let mapped = who(None, "c", "::ffff:10.1.0.9");
        assert_eq!(acl.decide(&inside, Access::Publish, "t"), Some(true));
        assert_eq!(acl.decide(&outside, Access::Publish, "t"), Some(false));
        assert_eq!(acl.decide(&mapped, Access::Publish, "t"), Some(true));
    }

    #[test]
    fn an_allow_must_cover_a_subscription_and_a_deny_applies_on_any_overlap() {
        let acl = Acl::parse("deny all subscribe secret/#\nallow all subscribe a/+\n").unwrap();
        let c = who(None, "c", "127.0.0.1");
        assert_eq!(acl.decide(&c, Access::Subscribe, "a/b"), Some(true));
        assert_eq!(acl.decide(&c, Access::Subscribe, "a/+"), Some(true));
        // `a/#` also matches a/b/c, which `a/+` does not allow.
        assert_eq!(acl.decide(&c, Access::Subscribe, "a/#"), None);
        // `#` would receive secret/..., so the deny applies.
        assert_eq!(acl.decide(&c, Access::Subscribe, "#"), Some(false));
        assert_eq!(acl.decide(&c, Access::Subscribe, "+/x"), Some(false));
    }

    #[test]
    fn covers_and_overlaps_follow_topic_filter_semantics() {
        assert!(covers("a/#", "a"));
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("+/b", "x/b"));
        assert!(!covers("+/b", "#"));
        assert!(!covers("a/b", "a/+"));
        assert!(overlaps("a/+", "+/b"));
        assert!(overlaps("a/#", "a"));
        assert!(!overlaps("a/b", "a/c"));
        assert!(!overlaps("a/b", "a/b/c"));
    }

    #[test]
    fn a_bad_line_is_refused_with_its_number() {
        let e = Acl::parse("allow all both a\nallow someone both a\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = Acl::parse("allow addr 10.0.0.0/40 both a\n").unwrap_err();
        assert!(e.message.contains("prefix length"), "{e}");
        let e = Acl::parse("deny all publish a/#/b\n").unwrap_err();
        assert!(e.message.contains("not a valid topic filter"), "{e}");
        assert!(Acl::parse("allow all both\n").is_err());
    }

    #[test]
    fn comment_lines_are_skipped_but_a_wildcard_is_not_a_comment() {
        let acl = Acl::parse("# all\n  # indented\nallow all both #\n\n").unwrap();
        assert_eq!(acl.len(), 1);
        let c = who(None, "c", "127.0.0.1");
        assert_eq!(acl.decide(&c, Access::Publish, "a/x"), Some(true));
    }
}
