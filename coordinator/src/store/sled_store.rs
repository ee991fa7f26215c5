//! The durable store: one sled tree per entity, a format-version key checked at open (sled is
//! beta software; its on-disk format has changed before), and atomic multi-tree commits made
//! with a redo record instead of sled's transactions.
//!
//! Why not `sled::Transactional`: in sled 0.34 every transaction that commits seals and
//! writes the current log buffer twice (`pin_log` rolls the buffer before and after its batch
//! marker), each a `pwrite` plus a waited-for `sync_file_range` handed to an IO thread. A
//! Lease and a Fail are one transaction each, so under load the coordinator spent most of its
//! CPU in those writes and the thread switches around them, whatever group commit saved on
//! flushes (docs/benchmarks.md, docs/design-notes.md).
//!
//! How a commit stays atomic without them: commits are serialized by one mutex; the body's
//! writes are buffered; at commit the whole write set is first stored as one value (the redo
//! record, one sled insert: one log message, atomic on its own), then applied key by key.
//! sled recovers a prefix of its log, and the redo record precedes every write it describes,
//! so after a crash the store holds either none of the commit (the record was not recovered),
//! or the record and some of its writes, which [`SledStore::open`] completes by applying the
//! record again before anything else reads the store. Applying is idempotent, and only the
//! last commit's record can be incomplete, so one record is kept and overwritten each time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use super::{FORMAT_KEY, FORMAT_VERSION, JobStore, Tree, TreeEntries, Txn, UPGRADABLE_FORMATS};
use crate::error::{Error, Result, free_space, is_no_space};

/// The sled tree holding the redo record (not a [`Tree`]: only this store has one).
const REDO_TREE: &str = "redo";
const REDO_KEY: &[u8] = b"last";
/// Format 1 records carry no commit number (read as commit 0).
const REDO_MAGIC_V1: &[u8; 4] = b"IBR1";
const REDO_MAGIC: &[u8; 4] = b"IBR2";
/// Beside sled's files: the number of a commit known to be durable. sled takes a log cut
/// short for a torn write and recovers the prefix without a word, so a truncated copy or a
/// disk that lost a file's tail would otherwise be served as if nothing were missing.
const DURABLE_MARK: &str = "durable-commit";
/// How often a flush also brings the mark up to date (it is exact at a clean shutdown).
const MARK_EVERY: Duration = Duration::from_secs(5);
/// Written and flushed by a reopen: proof that the file system takes writes again.
const PROBE_KEY: &[u8] = b"write_probe";

/// A commit's writes: `None` removes the key. Ordered, so a record is deterministic.
type Writes = BTreeMap<(Tree, Vec<u8>), Option<Vec<u8>>>;

/// One open sled database and its trees.
#[derive(Debug)]
struct Handles {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    redo: sled::Tree,
}

impl Handles {
    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree.position()]
    }

    fn apply(&self, writes: &Writes) -> sled::Result<()> {
        for ((tree, key), value) in writes {
            match value {
                Some(value) => self.tree(*tree).insert(key, value.as_slice())?,
                None => self.tree(*tree).remove(key)?,
            };
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct SledStore {
    /// `None` only after a reopen failed: every call then answers [`Error::StoreLost`].
    handles: RwLock<Option<Handles>>,
    /// Held for a whole commit (body, redo record, apply): commits are serializable, and
    /// a body's reads never see another commit half applied.
    commit: Mutex<()>,
    path: PathBuf,
    /// Set by a write that failed for lack of space. sled's IO errors are sticky (after one
    /// failed log write the open database refuses every write, even once space returns), so
    /// this stays set until [`JobStore::reopen`] proves the file system takes writes again.
    full: AtomicBool,
    /// The number of the last commit applied (it is in the redo record).
    commits: AtomicU64,
    /// When the durable mark was last written.
    marked: Mutex<Instant>,
    /// While a snapshot scans: every commit's writes are copied here too.
    tap: Mutex<Option<Writes>>,
    tapping: AtomicBool,
    /// One snapshot at a time (they share the tap).
    snapshots: Mutex<()>,
}

/// `scanned` with every write of `tapped` applied over it (both in key order per tree).
fn overlay(scanned: TreeEntries, tapped: Writes) -> TreeEntries {
    scanned
        .into_iter()
        .map(|(tree, entries)| {
            let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = entries.into_iter().collect();
            for ((_, key), value) in tapped.range((tree, Vec::new())..).take_while(|((t, _), _)| *t == tree) {
                match value {
                    Some(value) => merged.insert(key.clone(), value.clone()),
                    None => merged.remove(key),
                };
            }
            (tree, merged.into_iter().collect())
        })
        .collect()
}

impl SledStore {
    /// Opens (or creates) the store in `dir`; refuses a store of another format version and
    /// completes a commit a crash interrupted.
    pub fn open(dir: &Path) -> Result<SledStore> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, format!("cannot create {}", dir.display()), e))?;
        let (handles, commits) = open_handles(dir)?;
        Ok(SledStore {
            handles: RwLock::new(Some(handles)),
            commit: Mutex::new(()),
            path: dir.to_path_buf(),
            full: AtomicBool::new(false),
            commits: AtomicU64::new(commits),
            marked: Mutex::new(Instant::now()),
            tap: Mutex::new(None),
            tapping: AtomicBool::new(false),
            snapshots: Mutex::new(()),
        })
    }

    /// Opens an existing store, refusing a directory that holds none (verify, backup).
    pub fn open_existing(dir: &Path) -> Result<SledStore> {
        if !dir.join("conf").exists() && !dir.join("db").exists() {
            return Err(Error::InvalidArgument(format!("{} holds no ibsweep store", dir.display())));
        }
        SledStore::open(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn handles(&self) -> Result<RwLockReadGuard<'_, Option<Handles>>> {
        let guard = self.handles.read().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            return Err(self.lost("an earlier reopen failed"));
        }
        Ok(guard)
    }

    fn lost(&self, detail: impl Into<String>) -> Error {
        Error::StoreLost { dir: self.path.display().to_string(), detail: detail.into() }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.commit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A failed write's error; lack of space is remembered (see `full`).
    fn write_error(&self, e: sled::Error) -> Error {
        match &e {
            sled::Error::Io(io) if is_no_space(io) => {
                if !self.full.swap(true, Ordering::SeqCst) {
                    tracing::error!(
                        dir = %self.path.display(),
                        free = %free_space(&self.path),
                        "the store's file system is full: refusing writes until space is freed"
                    );
                }
                Error::StorageFull { dir: self.path.display().to_string(), free: free_space(&self.path) }
            }
            _ if self.full.load(Ordering::SeqCst) => {
                Error::StorageFull { dir: self.path.display().to_string(), free: free_space(&self.path) }
            }
            _ => Error::Store(e.to_string()),
        }
    }

    /// Stores `writes` as the redo record of commit `number`: from here on the commit
    /// survives a crash whole.
    fn log(&self, handles: &Handles, number: u64, writes: &Writes) -> Result<()> {
        handles.redo.insert(REDO_KEY, encode_redo(number, writes)).map_err(|e| self.write_error(e))?;
        Ok(())
    }

    /// Records that commit `number` is durable, at most every [`MARK_EVERY`] unless `now`.
    fn mark(&self, number: u64, now: bool) {
        let mut marked = self.marked.lock().unwrap_or_else(|e| e.into_inner());
        if !now && marked.elapsed() < MARK_EVERY {
            return;
        }
        *marked = Instant::now();
        if let Err(e) = write_mark(&self.path, number) {
            tracing::debug!("cannot update {}: {e}", self.path.join(DURABLE_MARK).display());
        }
    }

    #[cfg(test)]
    fn with_handles<R>(&self, f: impl FnOnce(&Handles) -> R) -> R {
        f(self.handles().unwrap().as_ref().expect("open"))
    }
}

impl Drop for SledStore {
    /// A clean shutdown leaves an exact mark: everything up to the last commit is durable.
    fn drop(&mut self) {
        let covered = self.commits.load(Ordering::SeqCst);
        let flushed = self.handles.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|h| h.db.flush());
        if matches!(flushed, Some(Ok(_))) && !self.full.load(Ordering::SeqCst) {
            self.mark(covered, true);
        }
    }
}

/// sled's refusal to open a directory whose file lock another store holds.
fn is_lock_error(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock")
}

/// How long an open waits for a file lock to be let go. sled releases it from a thread of
/// its own a moment after the store that held it is dropped, so a store reopened at once in
/// the same process (after a full disk, or in a test) can find it still held; another live
/// coordinator holds it for good and is named after this wait.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why sled could not open `dir`, as a coordinator should say it.
fn open_error(dir: &Path, e: sled::Error) -> Error {
    let damaged = |detail: String| Error::Damaged { dir: dir.display().to_string(), detail };
    match e {
        sled::Error::Io(io) if is_lock_error(&io) => {
            Error::Store(format!("{} is in use by another coordinator ({io})", dir.display()))
        }
        sled::Error::Io(io) if is_no_space(&io) => {
            Error::StorageFull { dir: dir.display().to_string(), free: free_space(dir) }
        }
        sled::Error::Corruption { at, bt: _ } => {
            damaged(format!("sled found a corrupt log entry{}", at.map(|a| format!(" at {a:?}")).unwrap_or_default()))
        }
        sled::Error::Unsupported(why) => damaged(format!("sled cannot read it: {why}")),
        sled::Error::ReportableBug(why) => damaged(format!("sled failed reading it: {why}")),
        other => Error::Store(format!("cannot open {}: {other}", dir.display())),
    }
}

/// Opens sled in `dir`, checks the format version and completes an interrupted commit.
/// sled 0.34 panics on some damaged files instead of returning an error; that panic is
/// caught here and reported as a damaged store, so a bad disk never crashes the process.
fn open_handles(dir: &Path) -> Result<(Handles, u64)> {
    let open = || {
        std::panic::catch_unwind(|| -> sled::Result<Handles> {
            let db = sled::Config::new().path(dir).open()?;
            let trees = Tree::ALL.iter().map(|t| db.open_tree(t.name())).collect::<sled::Result<Vec<_>>>()?;
            let redo = db.open_tree(REDO_TREE)?;
            Ok(Handles { db, trees, redo })
        })
    };
    let start = std::time::Instant::now();
    let opened = loop {
        let opened = open();
        let locked = matches!(&opened, Ok(Err(sled::Error::Io(io))) if is_lock_error(io));
        if !locked || start.elapsed() >= LOCK_WAIT {
            break opened;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let handles = match opened {
        Ok(result) => result.map_err(|e| open_error(dir, e))?,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            return Err(Error::Damaged {
                dir: dir.display().to_string(),
                detail: format!("sled failed opening it ({what})"),
            });
        }
    };
    let meta = handles.tree(Tree::Meta);
    match meta.get(FORMAT_KEY)? {
        Some(found) if found.as_ref() == FORMAT_VERSION.as_bytes() => {}
        // Older formats this one only adds to (the redo tree) are upgraded in place.
        Some(found) if UPGRADABLE_FORMATS.iter().any(|f| found.as_ref() == f.as_bytes()) => {
            tracing::info!(
                path = %dir.display(),
                from = %String::from_utf8_lossy(&found),
                to = FORMAT_VERSION,
                "upgrading the store's format"
            );
            meta.insert(FORMAT_KEY, FORMAT_VERSION.as_bytes())?;
            handles.db.flush()?;
        }
        // A store with records but no format key lost its meta tree: not a fresh store.
        None if Tree::ALL.iter().any(|&t| t != Tree::Meta && !handles.tree(t).is_empty()) => {
            return Err(Error::Damaged {
                dir: dir.display().to_string(),
                detail: "it holds records but no format version (its meta tree is gone)".into(),
            });
        }
        None => {
            meta.insert(FORMAT_KEY, FORMAT_VERSION.as_bytes())?;
            handles.db.flush()?;
        }
        Some(found) => {
            return Err(Error::FormatVersion {
                path: dir.display().to_string(),
                found: String::from_utf8_lossy(&found).into_owned(),
                expected: FORMAT_VERSION.into(),
            });
        }
    }
    let mut commits = 0;
    if let Some(record) = handles.redo.get(REDO_KEY)? {
        // Usually already applied in full; if a crash cut the apply short, this ends it.
        let (number, writes) = decode_redo(&record).map_err(|e| Error::Damaged {
            dir: dir.display().to_string(),
            detail: format!("its last commit record cannot be read ({e})"),
        })?;
        handles.apply(&writes)?;
        handles.db.flush()?;
        commits = number;
    }
    if let Some(durable) = read_mark(dir)
        && durable > commits
    {
        return Err(Error::Damaged {
            dir: dir.display().to_string(),
            detail: format!(
                "its log ends at commit {commits}, but commit {durable} had been made durable: its files were \
                 truncated or lost (a partial copy, a failing disk)"
            ),
        });
    }
    write_mark(dir, commits)
        .map_err(|e| Error::io(dir, format!("cannot write {}", dir.join(DURABLE_MARK).display()), e))?;
    Ok((handles, commits))
}

fn read_mark(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(DURABLE_MARK)).ok()?;
    text.trim().strip_prefix("commit ")?.split_whitespace().next()?.parse().ok()
}

/// Replaces the mark atomically (a crash leaves the old one or the new one).
fn write_mark(dir: &Path, number: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{DURABLE_MARK}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    writeln!(file, "commit {number} is durable (ibsweep checks the store's log reaches it at open)")?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(DURABLE_MARK))?;
    std::fs::File::open(dir)?.sync_all()
}

/// `IBR2`, the commit's number (u64), then per write: tree name (u8 length), key (u32
/// length), 0 = remove or 1 = insert followed by the value (u32 length). Little-endian.
/// (`IBR1` records, from before commits were numbered, lack the number.)
fn encode_redo(number: u64, writes: &Writes) -> Vec<u8> {
    let size: usize = writes.iter().map(|((_, k), v)| 16 + 10 + k.len() + v.as_ref().map_or(0, Vec::len)).sum();
    let mut out = Vec::with_capacity(REDO_MAGIC.len() + 8 + size);
    out.extend_from_slice(REDO_MAGIC);
    out.extend_from_slice(&number.to_le_bytes());
    for ((tree, key), value) in writes {
        let name = tree.name().as_bytes();
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        match value {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                out.extend_from_slice(value);
            }
        }
    }
    out
}

fn decode_redo(mut bytes: &[u8]) -> Result<(u64, Writes)> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
        if bytes.len() < n {
            return Err(Error::Corrupt { tree: REDO_TREE, detail: "truncated redo record".into() });
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    fn len(bytes: &mut &[u8]) -> Result<usize> {
        Ok(u32::from_le_bytes(take(bytes, 4)?.try_into().expect("4 bytes")) as usize)
    }
    let number = match take(&mut bytes, REDO_MAGIC.len())? {
        magic if magic == REDO_MAGIC => u64::from_le_bytes(take(&mut bytes, 8)?.try_into().expect("8 bytes")),
        magic if magic == REDO_MAGIC_V1 => 0,
        _ => return Err(Error::Corrupt { tree: REDO_TREE, detail: "not a redo record".into() }),
    };
    let mut writes = Writes::new();
    while !bytes.is_empty() {
        let name_len = take(&mut bytes, 1)?[0] as usize;
        let name = take(&mut bytes, name_len)?;
        let tree = Tree::from_name(name).ok_or_else(|| Error::Corrupt {
            tree: REDO_TREE,
            detail: format!("unknown tree {:?}", String::from_utf8_lossy(name)),
        })?;
        let key_len = len(&mut bytes)?;
        let key = take(&mut bytes, key_len)?.to_vec();
        let value = match take(&mut bytes, 1)?[0] {
            0 => None,
            1 => {
                let value_len = len(&mut bytes)?;
                Some(take(&mut bytes, value_len)?.to_vec())
            }
            other => return Err(Error::Corrupt { tree: REDO_TREE, detail: format!("bad write kind {other}") }),
        };
        writes.insert((tree, key), value);
    }
    Ok((number, writes))
}

/// A commit in progress: reads see its own writes first, then the store.
struct SledTxn<'a> {
    handles: &'a Handles,
    writes: Writes,
}

impl Txn for SledTxn<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.writes.get(&(tree, key.to_vec())) {
            Some(value) => Ok(value.clone()),
            None => Ok(self.handles.tree(tree).get(key)?.map(|v| v.to_vec())),
        }
    }

    fn insert(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<()> {
        self.writes.insert((tree, key.to_vec()), Some(value.to_vec()));
        Ok(())
    }

    fn remove(&mut self, tree: Tree, key: &[u8]) -> Result<()> {
        self.writes.insert((tree, key.to_vec()), None);
        Ok(())
    }
}

impl JobStore for SledStore {
    fn transaction<R>(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<R>) -> Result<R> {
        let _commit = self.lock();
        let guard = self.handles()?;
        let handles = guard.as_ref().expect("checked by handles()");
        let mut txn = SledTxn { handles, writes: Writes::new() };
        let result = body(&mut txn)?;
        // Even a single write is logged: the record must always describe the last commit,
        // or reopening would apply an older one over it.
        if !txn.writes.is_empty() {
            if self.full.load(Ordering::SeqCst) {
                // Refused before sled sees it: the open database would refuse it anyway.
                return Err(Error::StorageFull { dir: self.path.display().to_string(), free: free_space(&self.path) });
            }
            // Counted once applied: a flush that reads the count covers every commit in it.
            let number = self.commits.load(Ordering::SeqCst) + 1;
            self.log(handles, number, &txn.writes)?;
            handles.apply(&txn.writes).map_err(|e| self.write_error(e))?;
            self.commits.store(number, Ordering::SeqCst);
            if self.tapping.load(Ordering::SeqCst)
                && let Some(tap) = self.tap.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
            {
                tap.extend(txn.writes);
            }
        }
        Ok(result)
    }

    fn scan(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let guard = self.handles()?;
        guard
            .as_ref()
            .expect("checked by handles()")
            .tree(tree)
            .scan_prefix(prefix)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Error::from))
            .collect()
    }

    fn scan_page(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        use std::ops::Bound;
        let start = match after {
            Some(key) => Bound::Excluded(key.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        let guard = self.handles()?;
        guard
            .as_ref()
            .expect("checked by handles()")
            .tree(tree)
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take_while(|kv| kv.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
            .take(limit)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Error::from))
            .collect()
    }

    fn flush(&self) -> Result<()> {
        let guard = self.handles()?;
        let covered = self.commits.load(Ordering::SeqCst);
        guard.as_ref().expect("checked by handles()").db.flush().map_err(|e| self.write_error(e))?;
        self.mark(covered, false);
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        match self.handles() {
            Ok(guard) => guard.as_ref().and_then(|h| h.db.size_on_disk().ok()).unwrap_or(0),
            Err(_) => 0,
        }
    }

    fn write_refusal(&self) -> Option<Error> {
        if self.handles.read().unwrap_or_else(|e| e.into_inner()).is_none() {
            return Some(self.lost("an earlier reopen failed"));
        }
        self.full
            .load(Ordering::SeqCst)
            .then(|| Error::StorageFull { dir: self.path.display().to_string(), free: free_space(&self.path) })
    }

    /// The trees are scanned while commits go on; every commit made meanwhile is also
    /// copied (the tap), and at the end, under the commit lock, the tap is closed. The
    /// snapshot is the scan overlaid with the tap: for a key no commit touched during the
    /// scan, the scan's value; for one a commit did, the last value written to it. Both
    /// are the key's value at the instant the tap closed, so the snapshot is that instant.
    fn snapshot(&self) -> Result<TreeEntries> {
        let _one_at_a_time = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        {
            let _commit = self.lock();
            *self.tap.lock().unwrap_or_else(|e| e.into_inner()) = Some(Writes::new());
            self.tapping.store(true, Ordering::SeqCst);
        }
        let scanned = Tree::ALL.iter().map(|&t| Ok((t, self.scan(t, &[])?))).collect::<Result<TreeEntries>>();
        let tapped = {
            let _commit = self.lock();
            self.tapping.store(false, Ordering::SeqCst);
            self.tap.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default()
        };
        Ok(overlay(scanned?, tapped))
    }

    fn reopen(&self) -> Result<()> {
        // Below this sled may not even manage to reopen (it writes while recovering): stay
        // closed for writes and open for reads until there is room.
        const MIN_FREE: u64 = 1 << 20;
        if fs2::available_space(&self.path).is_ok_and(|free| free < MIN_FREE) {
            return Err(Error::StorageFull { dir: self.path.display().to_string(), free: free_space(&self.path) });
        }
        let _commit = self.lock();
        let mut slot = self.handles.write().unwrap_or_else(|e| e.into_inner());
        // sled's file lock goes with its last handle; its IO threads may hold one briefly,
        // which `open_handles` waits out (LOCK_WAIT).
        drop(slot.take());
        let handles = match open_handles(&self.path) {
            Ok((handles, commits)) => {
                self.commits.store(commits, Ordering::SeqCst);
                handles
            }
            Err(e) => return Err(self.lost(e.to_string())),
        };
        let probe = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .to_be_bytes();
        let probed = handles.tree(Tree::Meta).insert(PROBE_KEY, &probe).and_then(|_| handles.db.flush());
        *slot = Some(handles);
        match probed {
            Ok(_) => {
                self.full.store(false, Ordering::SeqCst);
                tracing::info!(dir = %self.path.display(), free = %free_space(&self.path), "the store takes writes again");
                Ok(())
            }
            Err(sled::Error::Io(io)) if is_no_space(&io) => {
                Err(Error::StorageFull { dir: self.path.display().to_string(), free: free_space(&self.path) })
            }
            Err(e) => Err(self.lost(format!("the write probe after reopening failed: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (tree, key, value; `None` removes)
    type Write<'a> = (Tree, &'a [u8], Option<&'a [u8]>);

    fn writes(entries: &[Write<'_>]) -> Writes {
        entries.iter().map(|(t, k, v)| ((*t, k.to_vec()), v.map(<[u8]>::to_vec))).collect()
    }

    fn get(store: &SledStore, tree: Tree, key: &[u8]) -> Option<Vec<u8>> {
        store.transaction(&mut |txn| txn.get(tree, key)).unwrap()
    }

    #[test]
    fn redo_records_round_trip_and_refuse_garbage() {
        let w =
            writes(&[(Tree::Jobs, b"k1", Some(b"v1")), (Tree::Active, b"", None), (Tree::Workers, b"w", Some(b""))]);
        assert_eq!(decode_redo(&encode_redo(7, &w)).unwrap(), (7, w.clone()));
        let bytes = encode_redo(7, &w);
        for cut in [0, 3, 5, bytes.len() - 1] {
            assert!(decode_redo(&bytes[..cut]).is_err(), "a record cut at {cut} bytes must be refused");
        }
        let mut other_tree = encode_redo(1, &writes(&[(Tree::Jobs, b"k", None)]));
        other_tree[13..17].copy_from_slice(b"xobs");
        assert!(decode_redo(&other_tree).unwrap_err().to_string().contains("unknown tree \"xobs\""));
    }

    /// A crash after the redo record and part of the apply (what a torn log prefix leaves):
    /// reopening finishes the commit before anyone reads.
    #[test]
    fn reopening_completes_a_commit_cut_short_after_its_redo_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .transaction(&mut |txn| {
                    txn.insert(Tree::Jobs, b"old", b"gone soon")?;
                    txn.insert(Tree::Sweeps, b"s", b"before")
                })
                .unwrap();
            let commit = writes(&[
                (Tree::Jobs, b"old", None),
                (Tree::Jobs, b"new", Some(b"job")),
                (Tree::Sweeps, b"s", Some(b"after")),
            ]);
            store.with_handles(|h| store.log(h, 2, &commit)).unwrap();
            // Only the first write reaches the trees before the "crash".
            let first: Writes = commit.into_iter().take(1).collect();
            store.with_handles(|h| h.apply(&first)).unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(get(&store, Tree::Jobs, b"old"), None);
        assert_eq!(get(&store, Tree::Jobs, b"new"), Some(b"job".to_vec()));
        assert_eq!(get(&store, Tree::Sweeps, b"s"), Some(b"after".to_vec()));
    }

    /// The record always describes the last commit, so replaying it never undoes a later one.
    #[test]
    fn replaying_the_last_record_keeps_every_later_write() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.transaction(&mut |txn| txn.insert(Tree::Meta, b"k", b"1")).unwrap();
            store.transaction(&mut |txn| txn.insert(Tree::Meta, b"k", b"2")).unwrap();
            // An aborted commit writes nothing, not even a record.
            let aborted = store.transaction(&mut |txn| -> Result<()> {
                txn.insert(Tree::Meta, b"k", b"3")?;
                Err(Error::InvalidArgument("abort".into()))
            });
            assert!(aborted.is_err());
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(get(&store, Tree::Meta, b"k"), Some(b"2".to_vec()));
    }

    #[test]
    fn a_format_2_store_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta").unwrap().insert(FORMAT_KEY, "2").unwrap();
            db.open_tree("jobs").unwrap().insert("j", "kept").unwrap();
            db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(get(&store, Tree::Jobs, b"j"), Some(b"kept".to_vec()));
        assert_eq!(get(&store, Tree::Meta, FORMAT_KEY), Some(FORMAT_VERSION.as_bytes().to_vec()));
    }
}
