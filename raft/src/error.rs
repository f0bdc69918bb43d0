//! Errors of the raft layer.

use raftmq_storage::StorageError;

use crate::snapshot_file::SnapshotError;

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Snapshot(#[from] SnapshotError),
    #[error("encoding: {0}")]
    Encode(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("no quorum: {0}")]
    Unavailable(String),
    /// Not committed, and never will be: the command never left this node
    /// (it was held while the node was in netsplit) and is discarded. A
    /// final refusal.
    #[error("not committed: {0}")]
    NotCommitted(String),
    /// The command reached a leader, but its result did not come back by
    /// its deadline: it may or may not take effect. Clients are not told it
    /// failed.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    #[error("proposer stopped")]
    Stopped,
    #[error(
        "the data directory holds state format {found}, and this build reads format {wants}: \
         start it with the raftmq version that wrote it, or with an empty data directory \
         (a new node joins and receives the state from the cluster)"
    )]
    Format { found: u32, wants: u32 },
    /// The cluster refused this node (it exits with this message).
    #[error("{0}")]
    Refused(String),
}

/// bincode configuration used for everything raftmq writes.
pub(crate) fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, RaftError> {
    bincode::serde::encode_to_vec(v, bincode_config()).map_err(|e| RaftError::Encode(e.to_string()))
}

pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, RaftError> {
    bincode::serde::decode_from_slice(b, bincode_config())
        .map(|(v, _)| v)
        .map_err(|e| RaftError::Encode(e.to_string()))
}

/// The size of `v` encoded, without encoding it anywhere.
pub fn encoded_len<T: serde::Serialize>(v: &T) -> Result<usize, RaftError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(v, &mut size, bincode_config())
        .map_err(|e| RaftError::Encode(e.to_string()))?;
    Ok(size.bytes_written)
}
