//! The fixture of the unit tests that drive apply one command at a time: a
//! state on a fresh RocksDB directory, commands applied as numbered entries,
//! and a reopen of the same directory.

use std::sync::Arc;

use raftmq_storage::Store;

use super::{MqttState, NoEvents};
use crate::command::{CmdResult, Command};

pub(super) struct Fixture {
    dir: tempfile::TempDir,
    pub(super) st: MqttState,
    index: u64,
}

impl Fixture {
    pub(super) fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let st = open(&dir);
        Fixture { dir, st, index: 0 }
    }

    /// Applies `cmd` as the next entry; its result.
    pub(super) fn apply(&mut self, cmd: Command) -> CmdResult {
        self.index += 1;
        let e = crate::types::numbered_entry(self.index, 1, 0, vec![(0, cmd)]);
        self.st
            .apply_entries(vec![e])
            .unwrap()
            .remove(0)
            .results
            .remove(0)
    }

    /// The state as a restarted node reads it from the same directory.
    pub(super) fn reopen(self) -> MqttState {
        let Fixture { dir, st, .. } = self;
        drop(st);
        open(&dir)
    }
}

fn open(dir: &tempfile::TempDir) -> MqttState {
    MqttState::open(Store::open(dir.path()).unwrap(), Arc::new(NoEvents)).unwrap()
}
