//! The durable store: one sled tree per entity, multi-tree transactions, a format-version
//! key checked at open (sled is beta software; its on-disk format has changed before).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::{FORMAT_KEY, FORMAT_VERSION, JobStore, Tree, Txn};
use crate::error::{Error, Result};

#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    path: PathBuf,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`; refuses a store of another format version.
    pub fn open(dir: &Path) -> Result<SledStore> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Store(format!("cannot create {}: {e}", dir.display())))?;
        let db = sled::Config::new().path(dir).open().map_err(|e| match e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
                Error::Store(format!("{} is in use by another coordinator ({io})", dir.display()))
            }
            other => Error::Store(format!("cannot open {}: {other}", dir.display())),
        })?;
        let trees = Tree::ALL.iter().map(|t| db.open_tree(t.name())).collect::<sled::Result<Vec<_>>>()?;
        let store = SledStore { db, trees, path: dir.to_path_buf() };
        let meta = &store.trees[Tree::Meta.position()];
        match meta.get(FORMAT_KEY)? {
            None => {
                meta.insert(FORMAT_KEY, FORMAT_VERSION.as_bytes())?;
                store.db.flush()?;
            }
            Some(found) if found.as_ref() == FORMAT_VERSION.as_bytes() => {}
            Some(found) => {
                return Err(Error::FormatVersion {
                    path: dir.display().to_string(),
                    found: String::from_utf8_lossy(&found).into_owned(),
                    expected: FORMAT_VERSION.into(),
                });
            }
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

struct SledTxn<'a> {
    trees: &'a [TransactionalTree],
}

fn conflict(e: sled::transaction::UnabortableTransactionError) -> Error {
    match e {
        // Handed back to sled below, which reruns the transaction.
        sled::transaction::UnabortableTransactionError::Conflict => Error::Conflict,
        sled::transaction::UnabortableTransactionError::Storage(e) => e.into(),
    }
}

impl Txn for SledTxn<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.trees[tree.position()].get(key).map(|v| v.map(|v| v.to_vec())).map_err(conflict)
    }

    fn insert(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<()> {
        self.trees[tree.position()].insert(key, value).map(|_| ()).map_err(conflict)
    }

    fn remove(&mut self, tree: Tree, key: &[u8]) -> Result<()> {
        self.trees[tree.position()].remove(key).map(|_| ()).map_err(conflict)
    }
}

impl JobStore for SledStore {
    fn transaction<R>(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<R>) -> Result<R> {
        // sled wants an `Fn` (it reruns the body on conflict); the body is FnMut, and runs are
        // sequential, so a RefCell is enough.
        let body = RefCell::new(body);
        let result = self.trees.as_slice().transaction(|trees| {
            let mut txn = SledTxn { trees };
            (body.borrow_mut())(&mut txn).map_err(|e| match e {
                Error::Conflict => ConflictableTransactionError::Conflict,
                other => ConflictableTransactionError::Abort(other),
            })
        });
        match result {
            Ok(r) => Ok(r),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    fn scan(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.trees[tree.position()]
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
        self.trees[tree.position()]
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take_while(|kv| kv.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
            .take(limit)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Error::from))
            .collect()
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
