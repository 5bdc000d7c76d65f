//! Access control lists in Mosquitto's `acl_file` format, and what they allow: rules before the first
//! `user` line for anonymous clients, `user NAME` sections, `topic [read|write|readwrite|deny] FILTER` and
//! `pattern [..] FILTER` with `%c` (client id) and `%u` (user name) for everyone. Owns the format and the
//! decisions, not where the file comes from nor their caching.

use crate::topic::relate::{filter_covers, filter_matches, filters_overlap};
use crate::topic::TopicFilter;
use std::collections::HashMap;

/// What a rule grants on the topics its filter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Receive messages (and subscribe).
    Read,
    /// Publish.
    Write,
    /// Both.
    ReadWrite,
    /// Neither, whatever a broader rule grants: deny rules are checked first, as in Mosquitto.
    Deny,
}

impl Access {
    fn parse(word: &str) -> Option<Access> {
        Some(match word {
            "read" => Access::Read,
            "write" => Access::Write,
            "readwrite" => Access::ReadWrite,
            "deny" => Access::Deny,
            _ => return None,
        })
    }

    fn grants(self, want: Want) -> bool {
        matches!(
            (self, want),
            (Access::ReadWrite, _) | (Access::Read, Want::Read) | (Access::Write, Want::Write)
        )
    }
}

/// The right a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Want {
    /// Receiving messages on a topic.
    Read,
    /// Publishing to a topic.
    Write,
}

/// One `topic` or `pattern` line: its access and filter (with `%c`/`%u` still in it for a pattern).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: String,
}

/// A line of an ACL file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct AclFileError {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Whose rights a check is about.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The client identifier.
    pub client_id: &'a str,
    /// The user name it connected with, if any.
    pub username: Option<&'a str>,
}

/// The rules of an ACL file. Within each list, deny rules come first and the others keep the file's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFile {
    /// Rules before the first `user` line: they apply to clients without a user name.
    anonymous: Vec<Rule>,
    /// Rules of each `user` section (a user named twice has the rules of both).
    users: HashMap<String, Vec<Rule>>,
    /// `pattern` lines, wherever they are: they apply to every client.
    patterns: Vec<Rule>,
}

impl AclFile {
    /// Reads a file's text as Mosquitto does: lines starting with `#` and blank lines are skipped, words are
    /// separated by spaces, a `topic` or `pattern` line without an access word grants `readwrite`, and the
    /// filter is the rest of the line (so it may contain spaces).
    pub fn parse(text: &str) -> Result<AclFile, AclFileError> {
        let mut acl = AclFile::default();
        let mut user: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            if line.starts_with('#') || line.trim_start().is_empty() {
                continue;
            }
            let error = |reason: String| AclFileError {
                line: i + 1,
                reason,
            };
            let line = line.trim_start_matches(' ');
            let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
            let rest = rest.trim_start_matches(' ');
            match keyword {
                "topic" | "pattern" => {
                    let rule = parse_rule(rest).map_err(error)?;
                    let list = match (keyword, &user) {
                        ("pattern", _) => &mut acl.patterns,
                        (_, Some(name)) => acl.users.entry(name.clone()).or_default(),
                        (_, None) => &mut acl.anonymous,
                    };
                    add(list, rule);
                }
                "user" => {
                    let name = rest.trim_matches([' ', '\t']);
                    if name.is_empty() {
                        return Err(error("`user` without a user name".to_owned()));
                    }
                    user = Some(name.to_owned());
                }
                other => {
                    return Err(error(format!(
                        "`{other}` is not `topic`, `pattern` or `user`"
                    )))
                }
            }
        }
        Ok(acl)
    }

    /// How many rules the file holds.
    pub fn len(&self) -> usize {
        self.anonymous.len()
            + self.patterns.len()
            + self.users.values().map(Vec::len).sum::<usize>()
    }

    /// Whether the file holds no rule (and so allows nothing).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `subject` may read or write `topic`, decided as Mosquitto decides: the client's own list
    /// (its user's section, or the anonymous rules), then the patterns; the first matching rule that denies
    /// or grants the right decides, and nothing matching denies.
    pub fn allows(&self, subject: Subject<'_>, topic: &str, want: Want) -> bool {
        let verdict = |rule: &Rule, filter: &str| -> Option<bool> {
            if !filter_matches(filter, topic) {
                return None;
            }
            match rule.access {
                Access::Deny => Some(false),
                access if access.grants(want) => Some(true),
                _ => None,
            }
        };
        for rule in self.own_rules(subject) {
            if let Some(decided) = verdict(rule, &rule.filter) {
                return decided;
            }
        }
        self.patterns_for(subject)
            .find_map(|(rule, filter)| verdict(rule, &filter))
            .unwrap_or(false)
    }

    /// Whether `subject` may subscribe to `filter`: some rule granting read reaches a topic it matches, and
    /// no deny rule covers all of them. A wider filter than the client may read (`#`) is allowed; the
    /// messages it may not read are then held back one by one by [`AclFile::allows`].
    pub fn allows_subscription(&self, subject: Subject<'_>, filter: &str) -> bool {
        let mut readable = false;
        let mut check = |rule: &Rule, rule_filter: &str| -> Option<bool> {
            match rule.access {
                Access::Deny if filter_covers(rule_filter, filter) => Some(false),
                access if access.grants(Want::Read) && filters_overlap(rule_filter, filter) => {
                    readable = true;
                    None
                }
                _ => None,
            }
        };
        for rule in self.own_rules(subject) {
            if check(rule, &rule.filter) == Some(false) {
                return false;
            }
        }
        for (rule, rule_filter) in self.patterns_for(subject) {
            if check(rule, &rule_filter) == Some(false) {
                return false;
            }
        }
        readable
    }

    /// Whether `subject` may read every topic `filter` matches, so that messages through it need no check:
    /// no deny rule reaches any of them, and one read rule covers them all (among the client's own rules,
    /// which are looked at first; else among the patterns). False when unsure.
    pub fn reads_all_of(&self, subject: Subject<'_>, filter: &str) -> bool {
        let denies =
            |rule: &Rule, f: &str| rule.access == Access::Deny && filters_overlap(f, filter);
        let covers =
            |rule: &Rule, f: &str| rule.access.grants(Want::Read) && filter_covers(f, filter);
        let own = self.own_rules(subject);
        if own.iter().any(|r| denies(r, &r.filter)) {
            return false;
        }
        if own.iter().any(|r| covers(r, &r.filter)) {
            return true;
        }
        let patterns: Vec<(&Rule, String)> = self.patterns_for(subject).collect();
        !patterns.iter().any(|(r, f)| denies(r, f)) && patterns.iter().any(|(r, f)| covers(r, f))
    }

    /// The `user` section of the client's user name, or the anonymous rules for a client without one.
    fn own_rules(&self, subject: Subject<'_>) -> &[Rule] {
        match subject.username {
            Some(name) => self.users.get(name).map_or(&[], Vec::as_slice),
            None => &self.anonymous,
        }
    }

    /// The patterns that apply to `subject`, with its client id and user name put in. None apply to a
    /// client whose identifier or user name contains a wildcard (it could otherwise widen its own rules),
    /// and a pattern naming `%u` does not apply to a client without a user name.
    fn patterns_for<'s>(
        &'s self,
        subject: Subject<'s>,
    ) -> impl Iterator<Item = (&'s Rule, String)> + 's {
        let wild = |s: &str| s.contains(['+', '#']);
        let usable = !self.patterns.is_empty()
            && !wild(subject.client_id)
            && !subject.username.is_some_and(wild);
        let patterns = if usable { &self.patterns[..] } else { &[] };
        patterns.iter().filter_map(move |rule| {
            let filter = substitute(&rule.filter, subject)?;
            Some((rule, filter))
        })
    }
}

/// The rest of a `topic` or `pattern` line: an optional access word, then the filter.
fn parse_rule(rest: &str) -> Result<Rule, String> {
    let (first, filter) = rest.split_once(' ').unwrap_or((rest, ""));
    let (access, filter) = match filter.trim_matches([' ', '\t']) {
        "" => (Access::ReadWrite, first),
        filter => {
            let access = Access::parse(first).ok_or_else(|| {
                format!("`{first}` is not an access type (read, write, readwrite or deny)")
            })?;
            (access, filter)
        }
    };
    if filter.is_empty() {
        return Err("a rule without a topic filter".to_owned());
    }
    TopicFilter::new(filter.to_owned())
        .map_err(|e| format!("`{filter}` is not a valid topic filter: {e}"))?;
    Ok(Rule {
        access,
        filter: filter.to_owned(),
    })
}

/// Adds a rule to a list: deny rules before every other, as Mosquitto orders them.
fn add(list: &mut Vec<Rule>, rule: Rule) {
    match rule.access {
        Access::Deny => {
            let at = list.iter().take_while(|r| r.access == Access::Deny).count();
            list.insert(at, rule);
        }
        _ => list.push(rule),
    }
}

/// A pattern with `%c` and `%u` replaced; `None` when it names `%u` and the client has no user name.
fn substitute(pattern: &str, subject: Subject<'_>) -> Option<String> {
    if !pattern.contains('%') {
        return Some(pattern.to_owned());
    }
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('%', Some('c')) => {
                chars.next();
                out.push_str(subject.client_id);
            }
            ('%', Some('u')) => {
                chars.next();
                out.push_str(subject.username?);
            }
            _ => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anon(client_id: &str) -> Subject<'_> {
        Subject {
            client_id,
            username: None,
        }
    }

    fn user<'a>(client_id: &'a str, username: &'a str) -> Subject<'a> {
        Subject {
            client_id,
            username: Some(username),
        }
    }

    const FILE: &str = "\
# anonymous clients
topic read public/#
topic deny public/secret

user alice
topic readwrite alice/#
topic write sensors/+/temp
topic deny alice/private/#

user bob
topic bob/#
pattern write devices/%c/status
pattern read inbox/%u/#
";

    #[test]
    fn anonymous_rules_apply_to_clients_without_a_user_name_only() {
        let acl = AclFile::parse(FILE).unwrap();
        assert!(acl.allows(anon("c"), "public/news", Want::Read));
        assert!(!acl.allows(anon("c"), "public/news", Want::Write));
        assert!(
            !acl.allows(anon("c"), "public/secret", Want::Read),
            "deny first"
        );
        assert!(!acl.allows(user("c", "alice"), "public/news", Want::Read));
    }

    #[test]
    fn a_user_section_grants_its_rights_and_denies_win() {
        let acl = AclFile::parse(FILE).unwrap();
        let alice = user("a1", "alice");
        assert!(acl.allows(alice, "alice/x", Want::Write));
        assert!(acl.allows(alice, "alice/x", Want::Read));
        assert!(acl.allows(alice, "sensors/k/temp", Want::Write));
        assert!(!acl.allows(alice, "sensors/k/temp", Want::Read));
        assert!(!acl.allows(alice, "alice/private/key", Want::Read));
        assert!(!acl.allows(alice, "bob/x", Want::Read));
        // A line without an access word grants readwrite.
        assert!(acl.allows(user("b", "bob"), "bob/x", Want::Write));
        // A user with no section gets only the patterns.
        assert!(!acl.allows(user("c", "carol"), "public/news", Want::Read));
    }

    #[test]
    fn patterns_put_in_the_client_id_and_user_name_for_everyone() {
        let acl = AclFile::parse(FILE).unwrap();
        assert!(acl.allows(user("dev7", "carol"), "devices/dev7/status", Want::Write));
        assert!(!acl.allows(user("dev7", "carol"), "devices/dev8/status", Want::Write));
        assert!(acl.allows(anon("dev7"), "devices/dev7/status", Want::Write));
        assert!(acl.allows(user("x", "carol"), "inbox/carol/1", Want::Read));
        assert!(
            !acl.allows(anon("x"), "inbox/carol/1", Want::Read),
            "%u needs a user name"
        );
        // A client id with a wildcard cannot widen a pattern.
        assert!(!acl.allows(anon("+"), "devices/x/status", Want::Write));
        assert!(!acl.allows(user("x", "#"), "inbox/a/b", Want::Read));
    }

    #[test]
    fn a_subscription_needs_some_readable_topic_and_no_covering_deny() {
        let acl = AclFile::parse(FILE).unwrap();
        assert!(acl.allows_subscription(anon("c"), "public/news"));
        assert!(
            acl.allows_subscription(anon("c"), "#"),
            "wider filters are granted"
        );
        assert!(!acl.allows_subscription(anon("c"), "public/secret"));
        assert!(!acl.allows_subscription(anon("c"), "private/#"));
        let alice = user("a", "alice");
        assert!(!acl.allows_subscription(alice, "alice/private/+"));
        assert!(acl.allows_subscription(alice, "alice/+"));
        assert!(
            !acl.allows_subscription(alice, "sensors/+/temp"),
            "write-only rules do not make a filter readable"
        );
        assert!(acl.allows_subscription(user("x", "carol"), "inbox/carol/#"));
        assert!(!acl.allows_subscription(user("x", "carol"), "inbox/dave/#"));
    }

    #[test]
    fn a_filter_is_wholly_readable_only_when_a_rule_covers_it_and_no_deny_reaches_it() {
        let acl = AclFile::parse(FILE).unwrap();
        let alice = user("a1", "alice");
        assert!(acl.reads_all_of(alice, "alice/public/+"));
        assert!(
            !acl.reads_all_of(alice, "alice/+"),
            "alice/private itself is denied"
        );
        assert!(
            !acl.reads_all_of(alice, "alice/#"),
            "alice/private/# is denied"
        );
        assert!(!acl.reads_all_of(alice, "#"));
        assert!(!acl.reads_all_of(alice, "sensors/+/temp"), "write only");
        assert!(acl.reads_all_of(anon("c"), "public/news"));
        assert!(
            !acl.reads_all_of(anon("c"), "public/#"),
            "public/secret is denied"
        );
        assert!(
            acl.reads_all_of(user("x", "carol"), "inbox/carol/#"),
            "through a pattern"
        );
        assert!(!acl.reads_all_of(anon("x"), "inbox/carol/#"));
        // Whatever reads_all_of says yes to, allows agrees with for each topic it matches.
        for topic in [
            "alice/a",
            "alice/private/k",
            "public/news",
            "public/secret",
            "inbox/carol/1",
        ] {
            for (subject, filter) in [
                (alice, "alice/public/+"),
                (anon("c"), "public/news"),
                (user("x", "carol"), "inbox/carol/#"),
            ] {
                if acl.reads_all_of(subject, filter)
                    && crate::topic::relate::filter_matches(filter, topic)
                {
                    assert!(acl.allows(subject, topic, Want::Read), "{filter} {topic}");
                }
            }
        }
    }

    #[test]
    fn parsing_follows_mosquitto_and_names_the_bad_line() {
        let acl = AclFile::parse("topic  read   a b/c\n\n   \nuser  x y \ntopic q\n").unwrap();
        assert!(
            acl.allows(anon("c"), "a b/c", Want::Read),
            "filters may hold spaces"
        );
        assert!(acl.allows(user("c", "x y"), "q", Want::Write));
        let bad = AclFile::parse("topic read a\nuser\n").unwrap_err();
        assert_eq!(bad.line, 2);
        let bad = AclFile::parse("# c\ntopic rw a/b\n").unwrap_err();
        assert_eq!(bad.line, 2);
        assert!(bad.reason.contains("rw"), "{bad}");
        let bad = AclFile::parse("topic read a/#/b\n").unwrap_err();
        assert_eq!(bad.line, 1);
        let bad = AclFile::parse("allow all\n").unwrap_err();
        assert_eq!(bad.line, 1);
        assert!(AclFile::parse("").unwrap().is_empty());
    }

    #[test]
    fn system_topics_need_rules_that_name_them() {
        let acl = AclFile::parse("topic read #\ntopic read $SYS/broker/#\n").unwrap();
        assert!(acl.allows(anon("c"), "a/b", Want::Read));
        assert!(!acl.allows(anon("c"), "$SYS/x", Want::Read));
        assert!(acl.allows(anon("c"), "$SYS/broker/uptime", Want::Read));
    }
}
