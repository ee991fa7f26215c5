//! The in-memory store: a locked map with copy-on-commit transactions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{JobStore, Tree, Txn};
use crate::error::Result;

type Map = BTreeMap<(Tree, Vec<u8>), Vec<u8>>;

#[derive(Debug, Default)]
pub struct MemoryStore {
    data: Mutex<Map>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
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
}
