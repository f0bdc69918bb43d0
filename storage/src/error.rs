//! The storage error type: a RocksDB failure or a corrupt record, with context.

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb {op}: {source}")]
    Rocks {
        op: &'static str,
        #[source]
        source: rocksdb::Error,
    },
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

impl StorageError {
    pub(crate) fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> StorageError {
        move |source| StorageError::Rocks { op, source }
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;
