//! Unit tests of [`super::Auth`]'s decisions: logins, the ACL with
//! `acl_nomatch`, `$SYS`, and when the admin API wants a key.

use raftmq_raft::state::{AclRec, ApiKeyRec, AuthTable, UserRec};

use super::*;

fn settings(toml: &str) -> Settings {
    let mut s = Settings::default();
    s.apply_toml(toml, "test").unwrap();
    s
}

fn table(users: &[(&str, &str)], rules: &str) -> AuthTable {
    AuthTable {
        users: users
            .iter()
            .map(|(u, p)| {
                let rec = UserRec {
                    hash: password::hash(p.as_bytes()).unwrap(),
                    set_ms: 0,
                };
                (u.to_string(), rec)
            })
            .collect(),
        acl: AclRec {
            rules: rules.into(),
            set_ms: 0,
        },
        api_keys: Default::default(),
    }
}

fn creds(user: Option<&str>, pass: Option<&str>) -> Credentials {
    Credentials {
        username: user.map(str::to_string),
        password: pass.map(|p| p.as_bytes().to_vec()),
        cert_identity: None,
    }
}

fn who(user: Option<&str>) -> Identity {
    Identity {
        user: user.map(str::to_string),
        client_id: "c".into(),
        addr: None,
    }
}

#[test]
fn a_replicated_user_logs_in_with_its_password_only() {
    let a = Auth::new(&settings("allow_anonymous = false\n")).unwrap();
    let t = table(&[("alice", "secret")], "");
    assert_eq!(
        a.login(&t, &creds(Some("alice"), Some("secret"))),
        Ok(Some("alice".into()))
    );
    assert_eq!(
        a.login(&t, &creds(Some("alice"), Some("wrong"))),
        Err(LoginError::BadCredentials)
    );
}

#[test]
fn an_unknown_user_gets_the_same_answer_as_a_wrong_password() {
    let a = Auth::new(&settings("allow_anonymous = true\n")).unwrap();
    let t = table(&[("alice", "secret")], "");
    assert_eq!(
        a.login(&t, &creds(Some("mallory"), Some("secret"))),
        a.login(&t, &creds(Some("alice"), Some("wrong"))),
    );
    assert_eq!(
        a.login(&t, &creds(Some("mallory"), Some("x"))),
        Err(LoginError::BadCredentials),
        "credentials are checked even while anonymous clients are allowed"
    );
}

#[test]
fn anonymous_clients_are_admitted_only_with_allow_anonymous() {
    let t = AuthTable::default();
    let open = Auth::new(&settings("")).unwrap();
    assert_eq!(open.login(&t, &creds(None, None)), Ok(None));
    let closed = Auth::new(&settings("allow_anonymous = false\n")).unwrap();
    assert_eq!(
        closed.login(&t, &creds(None, None)),
        Err(LoginError::NotAuthorized)
    );
    assert_eq!(
        closed.login(&t, &creds(Some("alice"), None)),
        Err(LoginError::BadCredentials)
    );
}

#[test]
fn the_config_files_users_log_in_and_a_certificate_identity_is_the_user() {
    let a = Auth::new(&settings(
        "allow_anonymous = false\n[users]\nbob = \"pw\"\n",
    ))
    .unwrap();
    let t = AuthTable::default();
    assert_eq!(
        a.login(&t, &creds(Some("bob"), Some("pw"))),
        Ok(Some("bob".into()))
    );
    let cert = Credentials {
        cert_identity: Some("device-7".into()),
        ..Default::default()
    };
    assert_eq!(a.login(&t, &cert), Ok(Some("device-7".into())));
}

#[test]
fn acl_nomatch_decides_what_no_rule_matches() {
    let t = table(&[], "deny all publish locked/#\n");
    let open = Auth::new(&settings("")).unwrap();
    assert!(open.may_publish(&open.acl(&t), &who(None), "free"));
    assert!(!open.may_publish(&open.acl(&t), &who(None), "locked/a"));
    let closed = Auth::new(&settings("acl_nomatch = \"deny\"\n")).unwrap();
    assert!(!closed.may_publish(&closed.acl(&t), &who(None), "free"));
    assert!(closed.may_subscribe(
        &closed.acl(&table(&[], "allow all subscribe free\n")),
        &who(None),
        "free"
    ));
}

#[test]
fn sys_is_denied_unless_the_user_is_a_sys_user_or_a_rule_allows_it() {
    let a = Auth::new(&settings("sys_users = [\"admin\"]\n")).unwrap();
    let t = AuthTable::default();
    assert!(!a.may_subscribe(&a.acl(&t), &who(None), "$SYS/#"));
    assert!(!a.may_subscribe(&a.acl(&t), &who(Some("alice")), "$SYS/1/uptime"));
    assert!(a.may_subscribe(&a.acl(&t), &who(Some("admin")), "$SYS/#"));
    let t = table(&[], "allow user alice subscribe $SYS/#\n");
    assert!(a.may_subscribe(&a.acl(&t), &who(Some("alice")), "$SYS/1/uptime"));
}

#[test]
fn a_new_rule_text_applies_to_the_next_decision() {
    let a = Auth::new(&settings("")).unwrap();
    assert!(a.may_publish(&a.acl(&table(&[], "")), &who(None), "t"));
    assert!(!a.may_publish(&a.acl(&table(&[], "deny all publish t\n")), &who(None), "t"));
    assert!(a.may_publish(
        &a.acl(&table(&[], "allow all publish t\n")),
        &who(None),
        "t"
    ));
}

#[test]
fn the_api_wants_a_key_once_one_exists_unless_configured_otherwise() {
    let mut t = AuthTable::default();
    let auto = Auth::new(&settings("")).unwrap();
    assert!(!auto.api_key_required(&t, "/api/v1/status"));
    let key = api_key::generate();
    t.api_keys
        .insert(api_key::digest(&key), ApiKeyRec { added_ms: 0 });
    assert!(auto.api_key_required(&t, "/api/v1/status"));
    assert!(!auto.api_key_required(&t, "/health"));
    assert!(auto.api_key_ok(&t, &key));
    assert!(!auto.api_key_ok(&t, "not-the-key-at-all"));
    let on = Auth::new(&settings("api_auth = \"on\"\nmetrics_auth = true\n")).unwrap();
    assert!(on.api_key_required(&AuthTable::default(), "/api/v1/status"));
    assert!(on.api_key_required(&AuthTable::default(), "/metrics"));
    let internal = api_key::internal_key(&Settings::default().distributed_cookie);
    assert!(on.api_key_ok(&AuthTable::default(), &internal));
    let off = Auth::new(&settings("api_auth = \"off\"\n")).unwrap();
    assert!(!off.api_key_required(&t, "/api/v1/status"));
}
