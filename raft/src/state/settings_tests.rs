//! Unit tests of the cluster settings in apply: `SetSettings` changes keys
//! all or nothing, records where each value came from, and a reopen (or a
//! node of an earlier version's data) reads the same values back.

use super::fixture::Fixture;
use crate::command::*;
use crate::settings::SettingSource;

fn set(pairs: &[(&str, &str)], bootstrap_file: Option<&str>) -> Command {
    Command::SetSettings(SetSettings {
        changes: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        bootstrap_file: bootstrap_file.map(str::to_string),
        now_ms: 1_000,
    })
}

#[test]
fn set_settings_changes_each_key_and_records_its_log_index() {
    let mut f = Fixture::new();
    f.apply(Command::Tick(Tick { now_ms: 1 }));
    let r = f.apply(set(
        &[
            ("max_offline_messages", "2"),
            ("allow_publish_during_netsplit", "on"),
        ],
        None,
    ));
    assert_eq!(r, CmdResult::Done);
    let s = &f.st.settings;
    assert_eq!(s.max_offline_messages, 2);
    assert!(s.allow_publish_during_netsplit);
    assert_eq!(
        s.source("max_offline_messages"),
        SettingSource::Set {
            index: 2,
            now_ms: 1_000
        }
    );
    assert_eq!(s.source("max_online_messages"), SettingSource::Default);
}

#[test]
fn a_set_with_one_bad_value_is_refused_whole() {
    let mut f = Fixture::new();
    let before = f.st.settings.clone();
    let r = f.apply(set(
        &[
            ("max_offline_messages", "2"),
            ("max_inflight_messages", "x"),
        ],
        None,
    ));
    assert!(
        matches!(&r, CmdResult::SettingsRefused(m) if m.contains("max_inflight_messages")),
        "{r:?}"
    );
    assert!(matches!(
        f.apply(set(&[("no_such_key", "1")], None)),
        CmdResult::SettingsRefused(_)
    ));
    assert_eq!(f.st.settings, before);
}

#[test]
fn settings_and_their_sources_survive_a_reopen() {
    let mut f = Fixture::new();
    f.apply(set(
        &[("persistent_client_expiration", "2h")],
        Some("/etc/raftmq.toml"),
    ));
    f.apply(set(&[("max_offline_messages", "7")], None));
    let want = f.st.settings.clone();
    assert_eq!(want.persistent_client_expiration, 7200);
    let reopened = f.reopen();
    assert_eq!(reopened.settings, want);
    assert_eq!(
        reopened.settings.source("persistent_client_expiration"),
        SettingSource::Bootstrap {
            file: "/etc/raftmq.toml".into(),
            index: 1,
            now_ms: 1_000
        }
    );
}

#[test]
fn a_configure_after_a_set_wins_for_its_six_keys_also_after_a_reopen() {
    let mut f = Fixture::new();
    f.apply(set(&[("max_offline_messages", "7")], None));
    f.apply(Command::Configure(ClusterSettings {
        max_offline_messages: 3,
        ..Default::default()
    }));
    assert_eq!(f.st.settings.max_offline_messages, 3);
    let reopened = f.reopen();
    assert_eq!(reopened.settings.max_offline_messages, 3);
    assert_eq!(
        reopened.settings.source("max_offline_messages"),
        SettingSource::Configure { index: 2 }
    );
}
