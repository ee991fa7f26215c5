//! The in-memory store: a locked map with copy-on-commit transactions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{JobStore, Tree, TreeEntries, Txn};
use crate::error::{Error, Result};

type Map = BTreeMap<(Tree, Vec<u8>), Vec<u8>>;

#[derive(Debug, Default)]
pub struct MemoryStore {
    data: Mutex<Map>,
    /// A simulated full disk (tests): writes fail while it is set.
    disk_full: AtomicBool,
    /// Like sled: once a write failed for space, writes are refused until a reopen.
    refusing: AtomicBool,
    /// A simulated store that cannot be reopened (tests of the exit for a restart).
    reopen_fails: AtomicBool,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Makes the simulated disk full or frees it, for tests of what a full disk does to
    /// the layers above. Like sled, the store keeps refusing after space returns until
    /// [`JobStore::reopen`].
    pub fn set_disk_full(&self, full: bool) {
        self.disk_full.store(full, Ordering::SeqCst);
    }

    /// Makes the next reopens fail as if the directory had become unreadable.
    pub fn set_reopen_fails(&self, fails: bool) {
        self.reopen_fails.store(fails, Ordering::SeqCst);
    }

    fn full_error() -> Error {
        Error::StorageFull { dir: "memory".into(), free: "0 B".into() }
    }
}

struct Overlay<'a> {
    base: &'a Map,
    writes: HashMap<(Tree, Vec<u8>), Option<Vec<u8>>>,
}

impl Txn for Overlay<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let k = (tree, key.to_vec());
        Ok(match self.writes.get(&k) {
            Some(v) => v.clone(),
            None => self.base.get(&k).cloned(),
        })
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

impl JobStore for MemoryStore {
    fn transaction<R>(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<R>) -> Result<R> {
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        let mut overlay = Overlay { base: &data, writes: HashMap::new() };
        let result = body(&mut overlay)?;
        let writes = overlay.writes;
        if !writes.is_empty() && (self.disk_full.load(Ordering::SeqCst) || self.refusing.load(Ordering::SeqCst)) {
            self.refusing.store(true, Ordering::SeqCst);
            return Err(MemoryStore::full_error());
        }
        for (k, v) in writes {
            match v {
                Some(v) => data.insert(k, v),
                None => data.remove(&k),
            };
        }
        Ok(result)
    }

    fn scan(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        Ok(data
            .range((tree, prefix.to_vec())..)
            .take_while(|((t, k), _)| *t == tree && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_page(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        use std::ops::Bound;
        let data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        let start = match after {
            Some(key) => Bound::Excluded((tree, key.to_vec())),
            None => Bound::Included((tree, prefix.to_vec())),
        };
        Ok(data
            .range((start, Bound::Unbounded))
            .take_while(|((t, k), _)| *t == tree && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        0
    }

    fn write_refusal(&self) -> Option<Error> {
        self.refusing.load(Ordering::SeqCst).then(MemoryStore::full_error)
    }

    fn snapshot(&self) -> Result<TreeEntries> {
        let data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Tree::ALL
            .iter()
            .map(|&tree| {
                let entries = data.iter().filter(|((t, _), _)| *t == tree).map(|((_, k), v)| (k.clone(), v.clone()));
                (tree, entries.collect())
            })
            .collect())
    }

    fn reopen(&self) -> Result<()> {
        if self.reopen_fails.load(Ordering::SeqCst) {
            return Err(Error::StoreLost { dir: "memory".into(), detail: "simulated: the directory is gone".into() });
        }
        if self.disk_full.load(Ordering::SeqCst) {
            return Err(MemoryStore::full_error());
        }
        self.refusing.store(false, Ordering::SeqCst);
        Ok(())
    }
}
