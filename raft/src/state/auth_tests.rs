//! Unit tests of the access-control state in apply: users, the ACL and API
//! keys are set and deleted through commands, survive a reopen, and travel
//! in a snapshot.

use std::io::Cursor;

use raftmq_storage::Table;

use super::fixture::Fixture;
use super::MqttState;
use crate::command::*;
use crate::snapshot_file::{SnapshotReader, SnapshotWriter};

fn user(name: &str, hash: &str) -> Command {
    Command::SetUser(SetUser {
        name: name.into(),
        hash: hash.into(),
        now_ms: 5,
    })
}

fn populate(f: &mut Fixture) {
    f.apply(user("alice", "$argon2id$a"));
    f.apply(user("bob", "$argon2id$b"));
    f.apply(Command::SetAcl(SetAcl {
        rules: "allow user alice both a/#\n".into(),
        now_ms: 6,
    }));
    f.apply(Command::AddApiKey(AddApiKey {
        digest: "d1".into(),
        now_ms: 7,
    }));
}

#[test]
fn users_acl_and_api_keys_are_published_as_applied() {
    let mut f = Fixture::new();
    populate(&mut f);
    let t = f.st.auth().get();
    assert_eq!(t.users.len(), 2);
    assert_eq!(t.users["alice"].hash, "$argon2id$a");
    assert_eq!(t.acl.rules, "allow user alice both a/#\n");
    assert!(t.api_keys.contains_key("d1"));
    // A change replaces the user's hash.
    f.apply(user("alice", "$argon2id$a2"));
    assert_eq!(f.st.auth().get().users["alice"].hash, "$argon2id$a2");
}

#[test]
fn every_change_raises_the_generation_and_other_commands_do_not() {
    let mut f = Fixture::new();
    let handle = f.st.auth();
    let start = handle.generation();
    f.apply(Command::SetAcl(SetAcl {
        rules: "deny all publish t\n".into(),
        now_ms: 1,
    }));
    let after_acl = handle.generation();
    assert!(after_acl > start);
    // A reader that sees the new generation reads the new rules.
    assert_eq!(handle.get().acl.rules, "deny all publish t\n");
    f.apply(Command::DeleteUser(DeleteUser {
        name: "nobody".into(),
    }));
    assert_eq!(handle.generation(), after_acl);
    f.apply(user("alice", "$argon2id$a"));
    assert!(handle.generation() > after_acl);
}

#[test]
fn deleting_what_does_not_exist_answers_missing_and_changes_nothing() {
    let mut f = Fixture::new();
    populate(&mut f);
    let before = f.st.auth().get();
    let r = f.apply(Command::DeleteUser(DeleteUser {
        name: "carol".into(),
    }));
    assert_eq!(r, CmdResult::Missing);
    let r = f.apply(Command::DeleteApiKey(DeleteApiKey {
        digest: "zz".into(),
    }));
    assert_eq!(r, CmdResult::Missing);
    assert_eq!(f.st.auth().get(), before);
    let r = f.apply(Command::DeleteUser(DeleteUser { name: "bob".into() }));
    assert_eq!(r, CmdResult::Done);
    let r = f.apply(Command::DeleteApiKey(DeleteApiKey {
        digest: "d1".into(),
    }));
    assert_eq!(r, CmdResult::Done);
    let t = f.st.auth().get();
    assert!(!t.users.contains_key("bob") && t.api_keys.is_empty());
}

#[test]
fn a_reopened_state_reads_the_same_auth_table() {
    let mut f = Fixture::new();
    populate(&mut f);
    f.apply(Command::DeleteUser(DeleteUser { name: "bob".into() }));
    let before = f.st.auth().get();
    assert_eq!(f.reopen().auth().get(), before);
}

#[test]
fn a_snapshot_carries_the_auth_table_to_another_node() {
    let mut f = Fixture::new();
    populate(&mut f);
    let meta = openraft::SnapshotMeta::default();
    let mut w = SnapshotWriter::new(Vec::new(), &meta, &Table::ALL).unwrap();
    MqttState::dump(&f.st.store().reader(), &mut w, || {}).unwrap();
    let (bytes, _) = w.finish().unwrap();
    let mut other = Fixture::new();
    other.apply(user("stale", "$argon2id$s"));
    let len = bytes.len() as u64;
    let (mut r, _) = SnapshotReader::open(Cursor::new(bytes), len).unwrap();
    other.st.install_snapshot(&mut r).unwrap();
    assert_eq!(other.st.auth().get(), f.st.auth().get());
}
