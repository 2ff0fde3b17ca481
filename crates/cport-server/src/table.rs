//! The session table: slots indexed by the completion key, allocated in
//! chunks that never move, so a completion finds its session without any
//! table-wide lock (only connect and disconnect touch the free list).

use std::sync::OnceLock;

use parking_lot::Mutex;

const CHUNK_SHIFT: u32 = 10;
const CHUNK: usize = 1 << CHUNK_SHIFT;

/// A fixed-capacity array of `T`, allocated a chunk at a time on first use.
pub(crate) struct Table<T> {
    chunks: Box<[OnceLock<Box<[T]>>]>,
}

impl<T: Default> Table<T> {
    /// Room for at least `capacity` slots (nothing is allocated yet).
    pub(crate) fn new(capacity: usize) -> Self {
        let n = capacity.div_ceil(CHUNK).max(1);
        Table {
            chunks: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Slot `idx`, if its chunk exists.
    pub(crate) fn get(&self, idx: u32) -> Option<&T> {
        let chunk = self.chunks.get((idx >> CHUNK_SHIFT) as usize)?.get()?;
        Some(&chunk[idx as usize & (CHUNK - 1)])
    }

    /// Slot `idx`, allocating its chunk if needed. `idx` must be below the capacity.
    pub(crate) fn ensure(&self, idx: u32) -> &T {
        let chunk =
            self.chunks[(idx >> CHUNK_SHIFT) as usize].get_or_init(|| (0..CHUNK).map(|_| T::default()).collect());
        &chunk[idx as usize & (CHUNK - 1)]
    }
}

/// Which slot indices are free.
pub(crate) struct FreeList {
    inner: Mutex<Free>,
}

struct Free {
    free: Vec<u32>,
    next: u32,
    cap: u32,
}

impl FreeList {
    /// Indices `0..cap`.
    pub(crate) fn new(cap: usize) -> Self {
        let cap = u32::try_from(cap).unwrap_or(u32::MAX >> 1);
        FreeList {
            inner: Mutex::new(Free {
                free: Vec::new(),
                next: 0,
                cap,
            }),
        }
    }

    /// A free index (the most recently freed first: its memory is warm), or
    /// `None` when all are taken.
    pub(crate) fn alloc(&self) -> Option<u32> {
        let mut f = self.inner.lock();
        if let Some(i) = f.free.pop() {
            return Some(i);
        }
        if f.next < f.cap {
            f.next += 1;
            return Some(f.next - 1);
        }
        None
    }

    /// Gives `idx` back.
    pub(crate) fn release(&self, idx: u32) {
        self.inner.lock().free.push(idx);
    }

    /// One past the highest index ever handed out.
    pub(crate) fn high_water(&self) -> u32 {
        self.inner.lock().next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_exist_only_once_their_chunk_is_allocated() {
        let t: Table<u8> = Table::new(3000);
        assert!(t.get(5).is_none());
        t.ensure(5);
        assert!(t.get(5).is_some());
        assert!(t.get(CHUNK as u32 - 1).is_some());
        assert!(t.get(CHUNK as u32).is_none());
        assert!(t.get(1 << 30).is_none());
    }

    #[test]
    fn free_list_reuses_last_freed_and_stops_at_capacity() {
        let f = FreeList::new(2);
        assert_eq!((f.alloc(), f.alloc(), f.alloc()), (Some(0), Some(1), None));
        f.release(0);
        assert_eq!(f.alloc(), Some(0));
        assert_eq!(f.high_water(), 2);
    }
}
