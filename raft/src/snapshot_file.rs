//! The snapshot file format: a whole snapshot of the state tables in one
//! file, written and read as a stream, one row at a time, so that neither
//! side ever holds the state (or a copy of it) in memory.
//!
//! ```text
//! header   magic      8 bytes   b"RAFTMQSN"
//!          version    u32       1
//!          meta_len   u32
//!          meta       meta_len  openraft's SnapshotMeta (last log id,
//!                               membership, snapshot id), bincode
//!          tables     u8        n, then n times: name_len u8, name
//!                               (the table's column family name)
//! records  table      u8        index into the header's table list (< n)
//!          key_len    u32, key
//!          value_len  u32, value
//! trailer  0xFF       u8        end marker (never a table index)
//!          rows       u64       number of records
//!          crc        u32       CRC-32 (IEEE) of every byte before it
//! ```
//!
//! Integers are big-endian. The file ends right after the CRC; anything
//! else (a short file, a length that runs past the end, a wrong count or
//! CRC, trailing bytes) is [`SnapshotError::Corrupt`]. Tables are named, not
//! numbered, so the order of `Table::ALL` may change between versions; a
//! table this node does not know is refused ([`SnapshotError::UnknownTable`])
//! rather than dropped.
//!
//! The file is what openraft streams to a follower (in
//! `snapshot_max_chunk_size` chunks), byte for byte.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use raftmq_storage::Table;

use crate::error::bincode_config;
use crate::types::SnapshotMeta;

const MAGIC: &[u8; 8] = b"RAFTMQSN";
/// The format version this node writes and reads.
pub const VERSION: u32 = 1;
const END: u8 = 0xFF;
/// Largest header meta accepted (a membership of many nodes is a few KiB).
const MAX_META: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot file: {0}")]
    Io(#[from] io::Error),
    #[error("not a raftmq snapshot file (no magic number; written by an older version?)")]
    NotSnapshot,
    #[error("snapshot format version {0}; this node reads version {VERSION}")]
    Version(u32),
    #[error("corrupt snapshot file: {0}")]
    Corrupt(String),
    #[error("the snapshot holds table `{0}`, which this node does not know")]
    UnknownTable(String),
}

fn corrupt(what: impl Into<String>) -> SnapshotError {
    SnapshotError::Corrupt(what.into())
}

/// One row as read: its table, key and value (borrowed from the reader
/// until the next row).
pub type RowRef<'a> = (Table, &'a [u8], &'a [u8]);

/// What a writer wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    pub bytes: u64,
}

/// Writes one snapshot file: the header at creation, then [`Self::row`]
/// for each row, then [`Self::finish`]. Buffering is the caller's (wrap a
/// file in a `BufWriter`).
pub struct SnapshotWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    tables: Vec<Table>,
    rows: u64,
    bytes: u64,
}

impl<W: Write> SnapshotWriter<W> {
    /// Writes the header: `meta` and the list of `tables` rows may belong to.
    pub fn new(out: W, meta: &SnapshotMeta, tables: &[Table]) -> Result<Self, SnapshotError> {
        if tables.len() >= END as usize {
            return Err(corrupt(format!("{} tables do not fit", tables.len())));
        }
        let meta = bincode::serde::encode_to_vec(meta, bincode_config())
            .map_err(|e| corrupt(format!("encoding the meta: {e}")))?;
        let mut w = SnapshotWriter {
            out,
            crc: crc32fast::Hasher::new(),
            tables: tables.to_vec(),
            rows: 0,
            bytes: 0,
        };
        w.put(MAGIC)?;
        w.put(&VERSION.to_be_bytes())?;
        w.put(&(meta.len() as u32).to_be_bytes())?;
        w.put(&meta)?;
        w.put(&[tables.len() as u8])?;
        for t in tables {
            let name = t.cf_name().as_bytes();
            w.put(&[name.len() as u8])?;
            w.put(name)?;
        }
        Ok(w)
    }

    /// Appends one row of `table` (which must be in the header's list).
    pub fn row(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        let i = self
            .tables
            .iter()
            .position(|t| *t == table)
            .ok_or_else(|| corrupt(format!("table {table:?} is not in the header")))?;
        let len = |b: &[u8]| {
            u32::try_from(b.len()).map_err(|_| corrupt(format!("a row of {} bytes", b.len())))
        };
        let (kl, vl) = (len(key)?, len(value)?);
        self.put(&[i as u8])?;
        self.put(&kl.to_be_bytes())?;
        self.put(key)?;
        self.put(&vl.to_be_bytes())?;
        self.put(value)?;
        self.rows += 1;
        Ok(())
    }

    /// Writes the trailer and flushes; returns the writer and what was
    /// written. Syncing to disk is the caller's.
    pub fn finish(mut self) -> Result<(W, Written), SnapshotError> {
        self.put(&[END])?;
        self.put(&self.rows.to_be_bytes())?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_be_bytes())?;
        self.bytes += 4;
        self.out.flush()?;
        let written = Written {
            rows: self.rows,
            bytes: self.bytes,
        };
        Ok((self.out, written))
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.crc.update(b);
        self.bytes += b.len() as u64;
        self.out.write_all(b)
    }
}

/// Reads one snapshot file as a stream of rows; the trailer (count, CRC,
/// end of file) is checked when [`Self::next_row`] reaches it. Every length
/// is checked against what is left of the file before anything is
/// allocated, so a corrupt length cannot ask for gigabytes.
pub struct SnapshotReader<R: Read> {
    inp: R,
    crc: crc32fast::Hasher,
    /// Bytes of the file not read yet.
    left: u64,
    tables: Vec<Table>,
    rows: u64,
    key: Vec<u8>,
    value: Vec<u8>,
    done: bool,
}

impl<R: Read> SnapshotReader<R> {
    /// Reads and checks the header; `len` is the size of the file.
    pub fn open(inp: R, len: u64) -> Result<(Self, SnapshotMeta), SnapshotError> {
        let mut r = SnapshotReader {
            inp,
            crc: crc32fast::Hasher::new(),
            left: len,
            tables: Vec::new(),
            rows: 0,
            key: Vec::new(),
            value: Vec::new(),
            done: false,
        };
        let mut magic = [0; 8];
        if len < magic.len() as u64 {
            return Err(SnapshotError::NotSnapshot);
        }
        r.take(&mut magic)?;
        if &magic != MAGIC {
            return Err(SnapshotError::NotSnapshot);
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(SnapshotError::Version(version));
        }
        let meta_len = u64::from(r.u32()?);
        if meta_len > MAX_META {
            return Err(corrupt(format!("a header meta of {meta_len} bytes")));
        }
        let mut meta = Vec::new();
        r.take_vec(&mut meta, meta_len)?;
        let meta: SnapshotMeta = bincode::serde::decode_from_slice(&meta, bincode_config())
            .map(|(m, _)| m)
            .map_err(|e| corrupt(format!("header meta: {e}")))?;
        let n = r.u8()?;
        if n == END {
            return Err(corrupt("255 tables"));
        }
        for _ in 0..n {
            let name_len = u64::from(r.u8()?);
            let mut name = Vec::new();
            r.take_vec(&mut name, name_len)?;
            let name = String::from_utf8_lossy(&name).into_owned();
            let t = Table::ALL
                .iter()
                .find(|t| t.cf_name() == name)
                .ok_or(SnapshotError::UnknownTable(name))?;
            r.tables.push(*t);
        }
        Ok((r, meta))
    }

    /// The next row, or `None` once the trailer was read and checked.
    pub fn next_row(&mut self) -> Result<Option<RowRef<'_>>, SnapshotError> {
        if self.done {
            return Ok(None);
        }
        let tag = self.u8()?;
        if tag == END {
            let rows = self.u64()?;
            let want = self.crc.clone().finalize();
            // The CRC is not part of what it covers.
            let mut crc = [0; 4];
            if self.left != 4 {
                return Err(corrupt(format!(
                    "{} bytes after the row count, expected the 4 of the CRC",
                    self.left
                )));
            }
            self.inp.read_exact(&mut crc).map_err(eof)?;
            self.left = 0;
            if rows != self.rows {
                return Err(corrupt(format!(
                    "the trailer counts {rows} rows, the file holds {}",
                    self.rows
                )));
            }
            if u32::from_be_bytes(crc) != want {
                return Err(corrupt("CRC mismatch"));
            }
            self.done = true;
            return Ok(None);
        }
        let table = *self
            .tables
            .get(tag as usize)
            .ok_or_else(|| corrupt(format!("row of table #{tag}, not in the header")))?;
        let kl = u64::from(self.u32()?);
        let mut key = std::mem::take(&mut self.key);
        self.take_vec(&mut key, kl)?;
        self.key = key;
        let vl = u64::from(self.u32()?);
        let mut value = std::mem::take(&mut self.value);
        self.take_vec(&mut value, vl)?;
        self.value = value;
        self.rows += 1;
        Ok(Some((table, &self.key, &self.value)))
    }

    /// Reads every remaining row and checks the trailer; returns the number
    /// of rows in the file.
    pub fn check_to_end(&mut self) -> Result<u64, SnapshotError> {
        while self.next_row()?.is_some() {}
        Ok(self.rows)
    }

    fn take(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        if buf.len() as u64 > self.left {
            return Err(corrupt(format!(
                "truncated: {} bytes needed, {} left",
                buf.len(),
                self.left
            )));
        }
        self.inp.read_exact(buf).map_err(eof)?;
        self.left -= buf.len() as u64;
        self.crc.update(buf);
        Ok(())
    }

    fn take_vec(&mut self, buf: &mut Vec<u8>, len: u64) -> Result<(), SnapshotError> {
        if len > self.left {
            return Err(corrupt(format!(
                "a field of {len} bytes with {} left in the file",
                self.left
            )));
        }
        // Bounded by the file's size just above.
        buf.resize(len as usize, 0);
        self.take(buf)
    }

    fn u8(&mut self) -> Result<u8, SnapshotError> {
        let mut b = [0; 1];
        self.take(&mut b)?;
        Ok(b[0])
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let mut b = [0; 4];
        self.take(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        let mut b = [0; 8];
        self.take(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }
}

/// A read that ran out of file: the file changed size while read.
fn eof(e: io::Error) -> SnapshotError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        corrupt("truncated while read")
    } else {
        SnapshotError::Io(e)
    }
}

/// A reader over `file` from its start, with its header read.
pub fn open_file(
    file: &std::fs::File,
) -> Result<(SnapshotReader<io::BufReader<&std::fs::File>>, SnapshotMeta), SnapshotError> {
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    let len = file.metadata()?.len();
    SnapshotReader::open(io::BufReader::with_capacity(1 << 20, f), len)
}

/// Reads the whole file and checks it (every length, the row count and the
/// CRC); returns its meta and number of rows.
pub fn verify(file: &std::fs::File) -> Result<(SnapshotMeta, u64), SnapshotError> {
    let (mut r, meta) = open_file(file)?;
    let rows = r.check_to_end()?;
    Ok((meta, rows))
}

/// Reads only the header of the file at `path`: what a restarted node needs
/// to serve its snapshot again.
pub fn read_meta(path: &Path) -> Result<SnapshotMeta, SnapshotError> {
    let file = std::fs::File::open(path)?;
    open_file(&file).map(|(_, meta)| meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(3, 1 as NodeId),
                42,
            )),
            last_membership: Default::default(),
            snapshot_id: "3-1-42".into(),
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = SnapshotWriter::new(Vec::new(), &meta(), &Table::ALL).expect("header");
        w.row(Table::Retained, b"a/b", b"v1").expect("row");
        w.row(Table::Sessions, b"c", &[7; 300]).expect("row");
        w.row(Table::Meta, b"m", b"").expect("row");
        let (bytes, written) = w.finish().expect("finish");
        assert_eq!(written.bytes, bytes.len() as u64);
        assert_eq!(written.rows, 3);
        bytes
    }

    type Rows = Vec<(Table, Vec<u8>, Vec<u8>)>;

    fn read_all(b: &[u8]) -> Result<(SnapshotMeta, Rows), SnapshotError> {
        let (mut r, m) = SnapshotReader::open(b, b.len() as u64)?;
        let mut rows = Vec::new();
        while let Some((t, k, v)) = r.next_row()? {
            rows.push((t, k.to_vec(), v.to_vec()));
        }
        Ok((m, rows))
    }

    #[test]
    fn rows_written_are_read_back_in_order_with_the_meta() {
        let (m, rows) = read_all(&sample()).expect("read");
        assert_eq!(m, meta());
        assert_eq!(
            rows,
            vec![
                (Table::Retained, b"a/b".to_vec(), b"v1".to_vec()),
                (Table::Sessions, b"c".to_vec(), vec![7; 300]),
                (Table::Meta, b"m".to_vec(), vec![]),
            ]
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = sample();
        for cut in 0..b.len() {
            assert!(read_all(&b[..cut]).is_err(), "cut at {cut} of {}", b.len());
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_is_an_error() {
        let b = sample();
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(read_all(&c).is_err(), "byte {i} of {}", b.len());
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut b = sample();
        b.push(0);
        assert!(matches!(read_all(&b), Err(SnapshotError::Corrupt(_))));
    }

    #[test]
    fn a_huge_length_is_refused_without_allocating_it() {
        let b = sample();
        // The first row's key length, right after the header.
        let (r, _) = SnapshotReader::open(&b[..], b.len() as u64).expect("header");
        let header = b.len() as u64 - r.left;
        let mut c = b.clone();
        let at = header as usize + 1;
        c[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = read_all(&c).expect_err("corrupt");
        assert!(err.to_string().contains("left in the file"), "{err}");
    }

    #[test]
    fn another_format_is_not_taken_for_a_snapshot() {
        assert!(matches!(
            read_all(b"\x00\x01 an old bincode snapshot"),
            Err(SnapshotError::NotSnapshot)
        ));
        let mut b = sample();
        b[8..12].copy_from_slice(&2u32.to_be_bytes());
        assert!(matches!(read_all(&b), Err(SnapshotError::Version(2))));
    }
}
