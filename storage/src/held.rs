//! Commands this node accepted during a netsplit and has not yet committed
//! (an `allow_*_during_netsplit` switch is on): kept in the Raft metadata
//! column family, which is local to the node (never replicated, never in a
//! snapshot), under `held/` and their proposer sequence number, so that a
//! restart proposes them again with the same ids.

use rocksdb::{IteratorMode, WriteBatch};

use crate::db::{Store, CF_RAFT};
use crate::error::{Result, StorageError};

const PREFIX: &[u8] = b"held/";

fn key(seq: u64) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Store {
    /// Writes held commands `(seq, encoded)` in one batch, synced: they are
    /// durable when this returns.
    pub fn put_held<'a>(&self, cmds: impl IntoIterator<Item = (u64, &'a [u8])>) -> Result<()> {
        let cf = self.cf(CF_RAFT)?;
        let mut batch = WriteBatch::default();
        for (seq, bytes) in cmds {
            batch.put_cf(cf, key(seq), bytes);
        }
        self.db
            .write_opt(batch, &Store::synced())
            .map_err(StorageError::rocks("write held commands"))
    }

    /// Forgets held commands once they are committed (not synced: a crash
    /// before the next sync proposes them again, and apply recognises
    /// their ids).
    pub fn delete_held(&self, seqs: impl IntoIterator<Item = u64>) -> Result<()> {
        let cf = self.cf(CF_RAFT)?;
        let mut batch = WriteBatch::default();
        for seq in seqs {
            batch.delete_cf(cf, key(seq));
        }
        self.db
            .write_opt(batch, &Store::unsynced())
            .map_err(StorageError::rocks("delete held commands"))
    }

    /// Every held command, by sequence number.
    pub fn held(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let cf = self.cf(CF_RAFT)?;
        let mut out = Vec::new();
        let it = self
            .db
            .iterator_cf(cf, IteratorMode::From(PREFIX, rocksdb::Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(StorageError::rocks("read held commands"))?;
            let Some(rest) = k.strip_prefix(PREFIX) else {
                break;
            };
            let seq =
                rest.try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| StorageError::Corrupt {
                        what: "held command key",
                        detail: format!("{k:?}"),
                    })?;
            out.push((seq, v.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_commands_survive_a_reopen_in_order_until_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            s.put_held([(7, &b"seven"[..]), (3, &b"three"[..])])
                .expect("put");
        }
        let s = Store::open(dir.path()).expect("reopen");
        let held = s.held().expect("held");
        assert_eq!(held, vec![(3, b"three".to_vec()), (7, b"seven".to_vec())]);
        s.delete_held([3]).expect("delete");
        assert_eq!(s.held().expect("held"), vec![(7, b"seven".to_vec())]);
    }
}
