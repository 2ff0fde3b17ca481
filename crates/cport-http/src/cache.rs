//! Small files kept in memory, checked against the file system on every use.
//!
//! For a 1 KiB file the work of a request is mostly system calls: resolving
//! the path (one per component), open, fstat, a splice through a pipe, close.
//! A cached file costs one `stat` per request instead, and its body leaves in
//! the same gathering send as its head.
//!
//! An entry is used only while the file still has the identity it was read
//! with: device, inode, length, mtime and ctime, to the nanosecond (ctime
//! also moves on chmod, rename and link changes). Any change is a miss, and
//! the file is resolved and read again. Entries are keyed by the decoded
//! request path; an entry is only ever created from a file that was resolved
//! inside the root, and it is only served again while the path leads to that
//! same inode, so a path changed to lead elsewhere is a miss.
//!
//! The total size is bounded: inserting past it evicts arbitrary entries
//! first (no LRU bookkeeping on the hot path).

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use parking_lot::RwLock;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    pub(crate) fn of(m: &Metadata) -> Self {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// What a file's responses need besides its body: validators and type.
#[derive(Debug)]
pub(crate) struct FileInfo {
    pub mtime: SystemTime,
    pub etag: String,
    pub content_type: &'static str,
}

/// A cached file: its bytes and what its responses need.
#[derive(Debug)]
pub(crate) struct Entry {
    pub id: FileId,
    pub bytes: Bytes,
    pub info: FileInfo,
}

/// Counters of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Requests served from memory.
    pub hits: u64,
    /// Lookups that found nothing usable (absent or changed).
    pub misses: u64,
    /// Files held now.
    pub entries: u64,
    /// Bytes of file contents held now.
    pub bytes: u64,
}

/// The entries and the bytes of file contents they hold, under one lock.
#[derive(Debug, Default)]
struct Map {
    files: HashMap<String, Arc<Entry>>,
    held: u64,
}

impl Map {
    fn remove(&mut self, key: &str) {
        if let Some(old) = self.files.remove(key) {
            self.held -= old.bytes.len() as u64;
        }
    }
}

/// The in-memory cache of small files.
#[derive(Debug)]
pub(crate) struct FileCache {
    map: RwLock<Map>,
    max_file: u64,
    max_total: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl FileCache {
    pub(crate) fn new(max_file: u64, max_total: u64) -> Self {
        FileCache {
            map: RwLock::new(Map::default()),
            max_file: max_file.min(max_total),
            max_total,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Whether a file of `len` bytes may be cached.
    pub(crate) fn admits(&self, len: u64) -> bool {
        len <= self.max_file && self.max_total > 0
    }

    /// The entry for `key` if the file `now` describes is still the one cached.
    pub(crate) fn get(&self, key: &str, now: impl FnOnce() -> Option<Metadata>) -> Option<Arc<Entry>> {
        if self.max_total == 0 {
            return None;
        }
        let entry = self.map.read().files.get(key).cloned();
        let fresh = match entry {
            Some(e) if now().is_some_and(|m| FileId::of(&m) == e.id) => Some(e),
            Some(_) => {
                self.map.write().remove(key);
                None
            }
            None => None,
        };
        match &fresh {
            Some(_) => self.hits.fetch_add(1, Relaxed),
            None => self.misses.fetch_add(1, Relaxed),
        };
        fresh
    }

    /// Stores `entry` under `key`, evicting others to stay within the total.
    pub(crate) fn insert(&self, key: &str, entry: Arc<Entry>) {
        let len = entry.bytes.len() as u64;
        if !self.admits(len) {
            return;
        }
        let mut map = self.map.write();
        map.remove(key);
        while map.held + len > self.max_total {
            let Some(victim) = map.files.keys().next().cloned() else {
                break;
            };
            map.remove(&victim);
        }
        map.held += len;
        map.files.insert(key.to_owned(), entry);
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let map = self.map.read();
        CacheStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            entries: map.files.len() as u64,
            bytes: map.held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(meta: &Metadata, len: usize) -> Arc<Entry> {
        Arc::new(Entry {
            id: FileId::of(meta),
            bytes: Bytes::from(vec![0u8; len]),
            info: FileInfo {
                mtime: SystemTime::UNIX_EPOCH,
                etag: String::new(),
                content_type: "x",
            },
        })
    }

    #[test]
    fn total_size_stays_bounded() {
        let meta = std::fs::metadata(".").unwrap();
        let cache = FileCache::new(100, 250);
        for i in 0..10 {
            cache.insert(&format!("k{i}"), entry(&meta, 100));
            assert!(cache.stats().bytes <= 250);
        }
        assert_eq!(cache.stats().entries, 2);
        cache.insert("big", entry(&meta, 101));
        assert!(
            cache.get("big", || Some(meta.clone())).is_none(),
            "over max_file is not cached"
        );
    }

    #[test]
    fn changed_identity_is_a_miss_and_drops_the_entry() {
        let meta = std::fs::metadata(".").unwrap();
        let other = std::fs::metadata("/").unwrap();
        let cache = FileCache::new(100, 1000);
        cache.insert("k", entry(&meta, 10));
        assert!(cache.get("k", || Some(meta.clone())).is_some());
        assert!(cache.get("k", || Some(other.clone())).is_none());
        assert!(
            cache.get("k", || Some(meta.clone())).is_none(),
            "dropped after the miss"
        );
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries, s.bytes), (1, 2, 0, 0));
    }
}
