//! Unit tests of the resource alarms: the watermark, the headroom, the
//! compaction schedule and the default limit.

use super::*;
use crate::config::DiskFreeLimit;

#[test]
fn the_alarm_is_raised_below_the_limit_and_cleared_at_the_limit_plus_a_tenth() {
    let mut m = Watermark::new(1000);
    assert_eq!(m.observe(5000), None);
    assert_eq!(m.observe(1000), None, "at the limit is not below it");
    assert_eq!(m.observe(999), Some(Change::Raised));
    assert!(m.raised());
    assert_eq!(m.observe(500), None, "raised once, not on every check");
    assert_eq!(
        m.observe(1050),
        None,
        "above the limit but inside the margin"
    );
    assert!(m.raised());
    assert_eq!(m.observe(1100), Some(Change::Cleared));
    assert!(!m.raised());
    assert_eq!(
        m.observe(1050),
        None,
        "cleared stays cleared above the limit"
    );
    assert_eq!(m.observe(10), Some(Change::Raised));
}

#[test]
fn compaction_under_the_alarm_runs_at_once_then_every_ten_seconds_or_sooner_while_queues_drain() {
    assert!(compaction_due(None, 0, 5));
    let s = Duration::from_secs;
    assert!(
        !compaction_due(Some(s(1)), 100, 0),
        "draining, but too soon"
    );
    assert!(compaction_due(Some(s(2)), 100, 40), "draining");
    assert!(!compaction_due(Some(s(5)), 100, 100), "not draining");
    assert!(!compaction_due(Some(s(5)), 100, 120), "filling");
    assert!(compaction_due(Some(s(10)), 100, 100));
}

#[test]
fn a_zero_limit_never_raises() {
    let mut m = Watermark::new(0);
    assert_eq!(m.observe(0), None);
    assert!(!m.raised());
}

#[test]
fn the_free_space_of_a_real_directory_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = fs_space(dir.path()).expect("statvfs");
    assert!(s.total > 0 && s.free <= s.total, "{s:?}");
    assert!(fs_space(&dir.path().join("missing")).is_err());
}

#[test]
fn publishes_are_admitted_within_the_headroom_a_reading_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alarm = DiskAlarm::new(DiskFreeLimit::Bytes(1000), dir.path());
    alarm.measured(1500);
    assert!(alarm.take(300));
    assert!(alarm.take(200));
    assert!(
        !alarm.take(1),
        "the headroom is used up until the next reading"
    );
    alarm.measured(1100);
    assert!(!alarm.take(101), "a refused one takes nothing");
    assert!(alarm.take(100));
    alarm.measured(900);
    assert!(!alarm.take(1), "below the limit there is no headroom");
}

#[test]
fn a_used_up_headroom_is_measured_again_before_a_publish_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alarm = DiskAlarm::new(DiskFreeLimit::Bytes(1), dir.path());
    // As if the last reading had found the disk at the limit.
    alarm.measured(1);
    assert!(alarm.admit(1000), "the real disk has room");
    let full = DiskAlarm::new(DiskFreeLimit::Bytes(u64::MAX - 1), dir.path());
    assert!(!full.admit(1), "the real disk is below this limit");
}

#[test]
fn a_publish_that_finds_no_room_above_the_limit_raises_the_alarm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let free = fs_space(dir.path()).expect("statvfs").free;
    let alarm = DiskAlarm::new(
        DiskFreeLimit::Bytes(free.saturating_sub(10 << 20)),
        dir.path(),
    );
    assert!(!alarm.raised());
    assert!(!alarm.admit(1 << 40));
    assert!(
        alarm.raised(),
        "refused for the disk, so the alarm is raised"
    );
    assert!(!alarm.admit(1));
}

#[test]
fn the_watermark_raised_by_a_publish_clears_at_the_limit_plus_a_tenth() {
    let mut m = Watermark::new(1000);
    assert_eq!(m.raise(), Some(Change::Raised));
    assert_eq!(m.raise(), None);
    assert_eq!(m.observe(1050), None);
    assert_eq!(m.observe(1100), Some(Change::Cleared));
}

#[test]
fn a_zero_limit_admits_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alarm = DiskAlarm::new(DiskFreeLimit::Bytes(0), dir.path());
    alarm.measured(0);
    assert!(alarm.admit(u64::MAX));
    assert!(alarm.admit(1 << 40));
}

#[test]
fn a_node_on_a_disk_below_its_limit_starts_in_alarm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alarm = DiskAlarm::new(DiskFreeLimit::Bytes(u64::MAX - 1), dir.path());
    assert!(alarm.raised());
    assert!(!alarm.admit(1));
    assert_eq!(alarm.alarms(), vec!["disk_free_limit"]);
    let alarm = DiskAlarm::new(DiskFreeLimit::Bytes(0), dir.path());
    assert!(!alarm.raised());
    assert!(alarm.free_bytes().is_some());
    assert!(alarm.alarms().is_empty());
}
