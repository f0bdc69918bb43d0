//! Unit tests of the config file: keys, values, lines, dotted keys and the
//! documented examples.

use super::*;

#[test]
fn unknown_key_is_named_with_its_line() {
    let mut s = Settings::default();
    let e = s
        .apply_toml(
            "allow_anonymous = true\nmax_inflite_messages = 3\n",
            "x.toml",
        )
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("line 2") && msg.contains("max_inflite_messages"),
        "{msg}"
    );
}

#[test]
fn bad_value_is_named() {
    let mut s = Settings::default();
    let e = s
        .apply_toml("max_inflight_messages = \"many\"\n", "x.toml")
        .unwrap_err();
    assert!(e.to_string().contains("max_inflight_messages"), "{e}");
}

#[test]
fn snapshot_chunk_bytes_is_bounded_by_the_transport_frame() {
    let mut s = Settings::default();
    s.apply_toml("snapshot_chunk_bytes = 65536\n", "x.toml")
        .unwrap();
    assert_eq!(s.snapshot_chunk_bytes, 65536);
    let e = s
        .apply_toml("snapshot_chunk_bytes = 1073741824\n", "x.toml")
        .unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
}

#[test]
fn durations_parse_in_vernemq_units() {
    assert_eq!(parse_duration_s("1w"), Some(604_800));
    assert_eq!(parse_duration_s("1m"), Some(2_592_000));
    assert_eq!(parse_duration_s("5min"), Some(300));
    assert_eq!(parse_duration_s("never"), Some(raftmq_raft::NEVER));
    assert_eq!(parse_duration_s("5x"), None);
    let mut s = Settings::default();
    s.apply_toml(
        "persistent_client_expiration = \"2h\"\nmax_online_messages = -1",
        "x",
    )
    .unwrap();
    assert_eq!(s.cluster.persistent_client_expiration, 7200);
    assert_eq!(s.cluster.max_online_messages, -1);
}

#[test]
fn sizes_parse_in_rabbitmq_units() {
    assert_eq!(parse_bytes("1GB"), Some(1_000_000_000));
    assert_eq!(parse_bytes("500MB"), Some(500_000_000));
    assert_eq!(parse_bytes("50kB"), Some(50_000));
    assert_eq!(parse_bytes("512MiB"), Some(512 * 1024 * 1024));
    assert_eq!(parse_bytes("2G"), Some(2 * 1024 * 1024 * 1024));
    assert_eq!(parse_bytes("1 GiB"), Some(1024 * 1024 * 1024));
    assert_eq!(parse_bytes("4096"), Some(4096));
    assert_eq!(parse_bytes("0"), Some(0));
    for bad in [
        "",
        "GB",
        "1.5GB",
        "-1",
        "10 parsecs",
        "1gb",
        "99999999999TB",
    ] {
        assert_eq!(parse_bytes(bad), None, "{bad}");
    }
}

#[test]
fn disk_free_limit_takes_bytes_or_a_size_string() {
    let mut s = Settings::default();
    s.apply_toml("disk_free_limit = \"1GB\"\n", "x").unwrap();
    assert_eq!(s.disk_free_limit, DiskFreeLimit::Bytes(1_000_000_000));
    s.apply_toml("disk_free_limit = 0\n", "x").unwrap();
    assert_eq!(s.disk_free_limit, DiskFreeLimit::Bytes(0));
    s.apply_toml("disk_free_limit = 52428800\n", "x").unwrap();
    assert_eq!(s.disk_free_limit, DiskFreeLimit::Bytes(50 * 1024 * 1024));
}

#[test]
fn a_bad_disk_free_limit_names_the_key_and_its_line() {
    let mut s = Settings::default();
    for bad in ["\"lots\"", "-5", "true", "\"1.5GB\""] {
        let text = format!("allow_anonymous = true\ndisk_free_limit = {bad}\n");
        let e = s.apply_toml(&text, "x.toml").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("disk_free_limit"), "{e}");
    }
}

#[test]
fn the_default_disk_free_limit_is_the_smaller_of_256_mib_and_5_percent() {
    let limit = DiskFreeLimit::Default;
    assert_eq!(limit.bytes(Some(100 * 1024 * MIB)), 256 * MIB);
    assert_eq!(limit.bytes(Some(1000 * MIB)), 50 * MIB);
    assert_eq!(limit.bytes(None), 256 * MIB);
    assert_eq!(DiskFreeLimit::Bytes(7).bytes(Some(1000 * MIB)), 7);
}

#[test]
fn rocksdb_budgets_reach_the_store_options() {
    let mut s = Settings::default();
    assert_eq!(s.store_options(), StoreOptions::default());
    s.apply_toml(
        "rocksdb_block_cache_size = \"16MiB\"\nrocksdb_write_buffer_size = \"8MiB\"\n",
        "x",
    )
    .unwrap();
    let o = s.store_options();
    assert_eq!(o.block_cache_bytes, 16 * 1024 * 1024);
    assert_eq!(o.write_buffer_bytes, 8 * 1024 * 1024);
    let e = s
        .apply_toml("rocksdb_write_buffer_size = \"1MiB\"\n", "x")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rocksdb_write_buffer_size") && e.contains("minimum"),
        "{e}"
    );
}

#[test]
fn the_readme_listener_example_is_a_dotted_key() {
    let mut s = Settings::default();
    s.apply_toml("listener.vmq.clustering = \"127.0.0.1:24991\"\n", "x")
        .unwrap();
    assert_eq!(s.cluster_addr, "127.0.0.1:24991".parse().unwrap());
    s.apply_toml("[listener.tcp]\ndefault = \"127.0.0.1:1999\"\n", "x")
        .unwrap();
    assert_eq!(s.mqtt_addr, "127.0.0.1:1999".parse().unwrap());
    assert_eq!(
        s.from_file.get("listener.tcp.default").map(String::as_str),
        Some("x")
    );
}

#[test]
fn an_unknown_dotted_key_is_named_in_full_with_its_real_line() {
    let mut s = Settings::default();
    let e = s
        .apply_toml(
            "allow_anonymous = true\n\n[listener.vmq]\nclusterin = \"a\"\n",
            "x",
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 4") && e.contains("`listener.vmq.clusterin`"),
        "{e}"
    );
}

#[test]
fn cluster_wide_keys_from_the_file_are_kept_for_bootstrap() {
    let mut s = Settings::default();
    s.apply_toml(
        "max_offline_messages = 2\nallow_publish_during_netsplit = \"on\"\nretry_interval = 5\n",
        "/etc/r.toml",
    )
    .unwrap();
    assert_eq!(
        s.cluster_from_file(),
        [
            (
                "allow_publish_during_netsplit".to_string(),
                "true".to_string()
            ),
            ("max_offline_messages".to_string(), "2".to_string()),
        ]
    );
}

/// Every ```toml block of the README and docs/*.md.
fn documented_examples() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap().flatten() {
        files.push(e.path());
    }
    let mut out = Vec::new();
    for f in files
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut block: Option<String> = None;
        for line in text.lines() {
            match (&mut block, line.trim_start()) {
                (None, l) if l.starts_with("```toml") => block = Some(String::new()),
                (Some(b), l) if l.starts_with("```") => {
                    out.push((f.display().to_string(), std::mem::take(b)));
                    block = None;
                }
                (Some(b), _) => {
                    b.push_str(line);
                    b.push('\n');
                }
                (None, _) => {}
            }
        }
    }
    out
}

#[test]
fn every_config_example_in_the_readme_and_docs_parses() {
    let examples = documented_examples();
    assert!(
        examples.iter().any(|(f, _)| f.ends_with("README.md")),
        "the README has a ```toml config example"
    );
    for (file, text) in examples {
        let mut s = Settings::default();
        if let Err(e) = s.apply_toml(&text, &file) {
            panic!("{e}\n{text}");
        }
    }
}
