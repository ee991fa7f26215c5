//! Backups: a consistent snapshot of a whole store (every tree, and the checkpoint files
//! its jobs reference) in one versioned, checksummed file, taken while the coordinator
//! serves or straight from a stopped coordinator's data directory; and restore, which
//! builds a new store from one.
//!
//! # Format (`IBSNAP1`)
//! ```text
//! "IBSNAP1\n"
//! u32 header length, header JSON {"format":1,"store_format":"3","created_ms":..,"records":..,"checkpoints":..}
//! per record:          0x01, u8 tree-name length, name, u32 key length, key, u32 value length, value
//! per checkpoint file: 0x02, u16 name length, name, u64 size, bytes
//! 0x00
//! SHA-256 of every byte before it (32 bytes)
//! ```
//! Lengths are little-endian. A file is checked whole (its digest) before anything is
//! restored from it, so a truncated or damaged backup is refused and never half-applied.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::lifecycle::Job;
use crate::records::JOBS;
use crate::store::{FORMAT_VERSION, JobStore, SledStore, Tree, TreeEntries, Txn, UPGRADABLE_FORMATS};

pub const MAGIC: &[u8; 8] = b"IBSNAP1\n";
/// The version of this file format (bumped on any incompatible change).
pub const FORMAT: u32 = 1;
/// The checkpoint files' directory inside a data directory.
pub const CHECKPOINTS: &str = "checkpoints";

const RECORD: u8 = 1;
const FILE: u8 = 2;
const END: u8 = 0;

/// What a backup file says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    pub format: u32,
    pub store_format: String,
    pub created_ms: u64,
    pub records: u64,
    pub checkpoints: u64,
}

/// A store as of one instant: its trees, and the checkpoint files its jobs reference. A
/// serving coordinator's files are pinned ([`crate::checkpoints::Pin`]) while the snapshot
/// lives, so a checkpoint replaced while the backup is written is still there to read.
#[derive(Debug)]
pub struct Snapshot {
    pub trees: TreeEntries,
    /// (file name, where to read it)
    pub checkpoints: Vec<(String, PathBuf)>,
    _pin: Option<crate::checkpoints::Pin>,
}

impl Snapshot {
    /// Takes a snapshot of `store`, whose checkpoint files are in `checkpoints`; `pin`
    /// (taken before the snapshot) keeps them in place while it is written.
    pub fn take(store: &impl JobStore, checkpoints: &Path, pin: Option<crate::checkpoints::Pin>) -> Result<Snapshot> {
        let trees = store.snapshot()?;
        let mut files = Vec::new();
        for (_, entries) in trees.iter().filter(|(t, _)| *t == Tree::Jobs) {
            for (_, value) in entries {
                let job: Job = JOBS.decode(value)?;
                if let Some(checkpoint) = job.checkpoint {
                    files.push((checkpoint.file.clone(), checkpoints.join(&checkpoint.file)));
                }
            }
        }
        Ok(Snapshot { trees, checkpoints: files, _pin: pin })
    }

    pub fn records(&self) -> u64 {
        self.trees.iter().map(|(_, e)| e.len() as u64).sum()
    }

    /// Writes the snapshot to `out`; returns its header.
    pub fn write(&self, out: impl Write, created_ms: u64) -> Result<Header> {
        let header = Header {
            format: FORMAT,
            store_format: FORMAT_VERSION.into(),
            created_ms,
            records: self.records(),
            checkpoints: self.checkpoints.len() as u64,
        };
        let mut out = Hashing { inner: BufWriter::with_capacity(1 << 20, out), hasher: Sha256::new() };
        let io = |e: std::io::Error| Error::Store(format!("writing the backup: {e}"));
        let json = serde_json::to_vec(&header).expect("a header serializes");
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&(json.len() as u32).to_le_bytes()).map_err(io)?;
        out.write_all(&json).map_err(io)?;
        for (tree, entries) in &self.trees {
            let name = tree.name().as_bytes();
            for (key, value) in entries {
                out.write_all(&[RECORD, name.len() as u8]).map_err(io)?;
                out.write_all(name).map_err(io)?;
                out.write_all(&(key.len() as u32).to_le_bytes()).map_err(io)?;
                out.write_all(key).map_err(io)?;
                out.write_all(&(value.len() as u32).to_le_bytes()).map_err(io)?;
                out.write_all(value).map_err(io)?;
            }
        }
        for (name, path) in &self.checkpoints {
            let mut file = File::open(path).map_err(|e| Error::io(path, format!("reading {}", path.display()), e))?;
            let size = file.metadata().map_err(io)?.len();
            out.write_all(&[FILE]).map_err(io)?;
            out.write_all(&(name.len() as u16).to_le_bytes()).map_err(io)?;
            out.write_all(name.as_bytes()).map_err(io)?;
            out.write_all(&size.to_le_bytes()).map_err(io)?;
            let copied = std::io::copy(&mut (&mut file).take(size), &mut out).map_err(io)?;
            if copied != size {
                return Err(Error::Store(format!("{} shrank while it was backed up", path.display())));
            }
        }
        out.write_all(&[END]).map_err(io)?;
        let digest = out.hasher.finalize();
        out.inner.write_all(&digest).map_err(io)?;
        out.inner.flush().map_err(io)?;
        Ok(header)
    }
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn damaged(file: &Path, detail: impl std::fmt::Display) -> Error {
    Error::DataLoss(format!("backup {}: {detail}; nothing was restored", file.display()))
}

/// Checks a backup file whole (magic, version, digest) and returns its header.
pub fn check(file: &Path) -> Result<Header> {
    let io = |e: std::io::Error| damaged(file, e);
    let size = fs::metadata(file).map_err(io)?.len();
    if size < (MAGIC.len() + 4 + 1 + 32) as u64 {
        return Err(damaged(file, format!("{size} bytes is too short to be a backup")));
    }
    let mut reader = BufReader::with_capacity(1 << 20, File::open(file).map_err(io)?);
    let mut hasher = Sha256::new();
    let copied = std::io::copy(&mut (&mut reader).take(size - 32), &mut HashSink(&mut hasher)).map_err(io)?;
    if copied != size - 32 {
        return Err(damaged(file, "it changed while it was read"));
    }
    let mut stored = [0u8; 32];
    reader.read_exact(&mut stored).map_err(io)?;
    if hasher.finalize().as_slice() != stored {
        return Err(damaged(file, "its SHA-256 does not match its contents (truncated or damaged)"));
    }
    let mut reader = BufReader::new(File::open(file).map_err(io)?);
    read_header(file, &mut reader)
}

struct HashSink<'a>(&'a mut Sha256);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_header(file: &Path, reader: &mut impl Read) -> Result<Header> {
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic).map_err(|e| damaged(file, e))?;
    if &magic != MAGIC {
        return Err(damaged(file, "not an ibsweep backup (no IBSNAP1 header)"));
    }
    let len = u32_of(file, reader)? as usize;
    let json = take(file, reader, len)?;
    let header: Header = serde_json::from_slice(&json).map_err(|e| damaged(file, format!("bad header: {e}")))?;
    if header.format != FORMAT {
        return Err(damaged(file, format!("backup format {}; this coordinator reads format {FORMAT}", header.format)));
    }
    if header.store_format != FORMAT_VERSION && !UPGRADABLE_FORMATS.contains(&header.store_format.as_str()) {
        return Err(damaged(
            file,
            format!("a store of format {}; this coordinator reads {FORMAT_VERSION}", header.store_format),
        ));
    }
    Ok(header)
}

fn take(file: &Path, reader: &mut impl Read, n: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    (&mut *reader).take(n as u64).read_to_end(&mut buf).map_err(|e| damaged(file, e))?;
    if buf.len() != n {
        return Err(damaged(file, "it ends inside an entry"));
    }
    Ok(buf)
}

fn u32_of(file: &Path, reader: &mut impl Read) -> Result<u32> {
    Ok(u32::from_le_bytes(take(file, reader, 4)?.try_into().expect("4 bytes")))
}

/// What a restore built.
#[derive(Debug, Clone)]
pub struct Restored {
    pub header: Header,
    pub bytes: u64,
}

/// Builds a store in `data_dir` (missing or empty) from `file`. The file is checked whole
/// first; the new store is flushed before this returns.
pub fn restore(file: &Path, data_dir: &Path) -> Result<Restored> {
    if let Ok(mut entries) = fs::read_dir(data_dir)
        && entries.next().is_some()
    {
        return Err(Error::InvalidArgument(format!(
            "{} is not empty: restore builds a new store and never overwrites one; name a new directory",
            data_dir.display()
        )));
    }
    let header = check(file)?;
    let result = restore_into(file, data_dir, &header);
    if result.is_err() {
        // Whatever a failed restore left behind is not a store anyone should serve.
        let _ = fs::remove_dir_all(data_dir);
    }
    result.map(|bytes| Restored { header, bytes })
}

fn restore_into(file: &Path, data_dir: &Path, header: &Header) -> Result<u64> {
    const BATCH: usize = 4096;
    let mut reader = BufReader::with_capacity(1 << 20, File::open(file).map_err(|e| damaged(file, e))?);
    read_header(file, &mut reader)?;
    let store = SledStore::open(data_dir)?;
    let checkpoints = data_dir.join(CHECKPOINTS);
    fs::create_dir_all(&checkpoints).map_err(|e| Error::io(&checkpoints, "creating the checkpoint directory", e))?;
    let mut batch: Vec<(Tree, Vec<u8>, Vec<u8>)> = Vec::with_capacity(BATCH);
    let commit = |batch: &mut Vec<(Tree, Vec<u8>, Vec<u8>)>| -> Result<()> {
        store.transaction(&mut |txn: &mut dyn Txn| batch.iter().try_for_each(|(t, k, v)| txn.insert(*t, k, v)))?;
        batch.clear();
        Ok(())
    };
    let (mut records, mut files) = (0u64, 0u64);
    loop {
        let kind = take(file, &mut reader, 1)?[0];
        match kind {
            RECORD => {
                let name_len = take(file, &mut reader, 1)?[0] as usize;
                let name = take(file, &mut reader, name_len)?;
                let tree = Tree::from_name(&name)
                    .ok_or_else(|| damaged(file, format!("unknown tree {:?}", String::from_utf8_lossy(&name))))?;
                let key_len = u32_of(file, &mut reader)? as usize;
                let key = take(file, &mut reader, key_len)?;
                let value_len = u32_of(file, &mut reader)? as usize;
                let value = take(file, &mut reader, value_len)?;
                batch.push((tree, key, value));
                records += 1;
                if batch.len() == BATCH {
                    commit(&mut batch)?;
                }
            }
            FILE => {
                let name_len = u16::from_le_bytes(take(file, &mut reader, 2)?.try_into().expect("2 bytes")) as usize;
                let name = String::from_utf8(take(file, &mut reader, name_len)?)
                    .map_err(|_| damaged(file, "a checkpoint file name is not UTF-8"))?;
                if name.contains('/') || name.contains('\\') || name.starts_with('.') {
                    return Err(damaged(file, format!("checkpoint file name {name:?} is not a plain name")));
                }
                let size = u64::from_le_bytes(take(file, &mut reader, 8)?.try_into().expect("8 bytes"));
                let path = checkpoints.join(&name);
                let mut out =
                    File::create(&path).map_err(|e| Error::io(&path, format!("writing {}", path.display()), e))?;
                let copied = std::io::copy(&mut (&mut reader).take(size), &mut out)
                    .map_err(|e| Error::io(&path, format!("writing {}", path.display()), e))?;
                if copied != size {
                    return Err(damaged(file, "it ends inside a checkpoint file"));
                }
                out.sync_all().map_err(|e| Error::io(&path, format!("syncing {}", path.display()), e))?;
                files += 1;
            }
            END => break,
            other => return Err(damaged(file, format!("unknown entry kind {other}"))),
        }
    }
    commit(&mut batch)?;
    if (records, files) != (header.records, header.checkpoints) {
        return Err(damaged(
            file,
            format!(
                "{records} records and {files} checkpoint files inside, its header says {} and {}",
                header.records, header.checkpoints
            ),
        ));
    }
    store.flush()?;
    File::open(&checkpoints).and_then(|d| d.sync_all()).map_err(|e| Error::io(&checkpoints, "syncing", e))?;
    Ok(fs::metadata(file).map(|m| m.len()).unwrap_or(0))
}
