//! Provided-buffer pools: receive memory picked only when data arrives.
//!
//! A connection that is idle pins no buffer (the seeds' "zero-byte recv"
//! problem): the io_uring backend registers the pool as a provided-buffer ring
//! and the kernel picks a buffer at receive time; the epoll backend takes one
//! from a free list only when the socket is readable.

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

use parking_lot::Mutex;

use super::uring::BufRing;

/// How buffers go back to whoever hands them out.
pub(crate) enum Provider {
    /// io_uring: a registered provided-buffer ring.
    Ring(BufRing),
    /// epoll: a free list of buffer ids.
    List(Mutex<Vec<u16>>),
}

pub(crate) struct PoolInner {
    mem: NonNull<u8>,
    layout: Layout,
    size: usize,
    count: u16,
    pub(crate) provider: Provider,
    /// The driver that made the pool (see `Driver::id`).
    owner: u64,
}

// SAFETY: the pool memory is a plain heap block; each buffer id is owned by
// exactly one party at a time (the provider's free set, the kernel during a
// receive, or one `PooledBuf`), so sharing the pointer across threads cannot
// create two writers of the same bytes.
unsafe impl Send for PoolInner {}
// SAFETY: see `Send`; shared access only reads buffers the reader owns.
unsafe impl Sync for PoolInner {}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // The ring (if any) is unregistered by `BufRing`'s own drop, which runs
        // after this body: the kernel never holds a buffer once every op that
        // used the pool has completed, and each such op kept this pool alive.
        // SAFETY: `mem` was allocated in `PoolInner::alloc` with `layout`.
        unsafe { alloc::dealloc(self.mem.as_ptr(), self.layout) }
    }
}

impl PoolInner {
    /// Allocates `count * size` bytes, page-aligned.
    pub(crate) fn alloc(count: u16, size: usize) -> std::io::Result<(NonNull<u8>, Layout)> {
        let total = (count as usize)
            .checked_mul(size)
            .filter(|t| *t > 0)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty buffer pool"))?;
        let layout = Layout::from_size_align(total, 4096)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "buffer pool too large"))?;
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { alloc::alloc(layout) };
        let mem = NonNull::new(ptr).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        Ok((mem, layout))
    }

    pub(crate) fn new(
        mem: NonNull<u8>,
        layout: Layout,
        count: u16,
        size: usize,
        provider: Provider,
        owner: u64,
    ) -> Self {
        PoolInner {
            mem,
            layout,
            size,
            count,
            provider,
            owner,
        }
    }

    /// The address of buffer `bid`.
    pub(crate) fn addr(&self, bid: u16) -> *mut u8 {
        debug_assert!(bid < self.count);
        // SAFETY: `bid < count`, so the offset stays inside the allocation.
        unsafe { self.mem.as_ptr().add(bid as usize * self.size) }
    }

    fn recycle(&self, bid: u16) {
        match &self.provider {
            Provider::Ring(ring) => ring.give_back(bid, self.addr(bid), self.size),
            Provider::List(free) => free.lock().push(bid),
        }
    }
}

/// A pool of equal-sized receive buffers shared by many connections.
///
/// Made by [`Port::buf_pool`](crate::Port::buf_pool); cheap to clone.
#[derive(Clone)]
pub struct BufPool {
    pub(crate) inner: Arc<PoolInner>,
}

impl fmt::Debug for BufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufPool")
            .field("count", &self.inner.count)
            .field("size", &self.inner.size)
            .finish()
    }
}

impl BufPool {
    /// How many buffers the pool has.
    pub fn count(&self) -> u16 {
        self.inner.count
    }
    /// The size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.inner.size
    }

    /// The driver that made this pool.
    pub(crate) fn owner(&self) -> u64 {
        self.inner.owner
    }

    /// Wraps buffer `bid`, which now holds `len` received bytes.
    pub(crate) fn claim(&self, bid: u16, len: usize) -> PooledBuf {
        // Only this pool's own ring hands out ids (`Port` refuses foreign
        // pools), so an id out of range would be a kernel or driver bug.
        assert!(
            bid < self.inner.count,
            "buffer id {bid} outside a pool of {}",
            self.inner.count
        );
        PooledBuf {
            pool: self.inner.clone(),
            bid,
            start: 0,
            len: len.min(self.inner.size),
        }
    }

    /// Takes a free buffer (epoll backend): its id and where to write.
    pub(crate) fn take(&self) -> Option<(u16, *mut u8, usize)> {
        match &self.inner.provider {
            Provider::List(free) => free
                .lock()
                .pop()
                .map(|bid| (bid, self.inner.addr(bid), self.inner.size)),
            Provider::Ring(_) => None,
        }
    }

    /// Gives an unused buffer back (epoll backend, after an empty read).
    pub(crate) fn untake(&self, bid: u16) {
        self.inner.recycle(bid);
    }

    pub(crate) fn bgid(&self) -> Option<u16> {
        match &self.inner.provider {
            Provider::Ring(r) => Some(r.bgid()),
            Provider::List(_) => None,
        }
    }
}

/// A received buffer from a [`BufPool`]; goes back to the pool when dropped.
pub struct PooledBuf {
    pool: Arc<PoolInner>,
    bid: u16,
    /// The view: bytes `start..start + len` of the buffer.
    start: usize,
    len: usize,
}

impl PooledBuf {
    /// The buffer's id within its pool.
    pub fn id(&self) -> u16 {
        self.bid
    }

    /// Drops the first `n` bytes from the view (the rest of a short send
    /// goes out again without a copy).
    ///
    /// # Panics
    /// If `n` is larger than the buffer's length.
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.len, "advance past the end of a pooled buffer");
        self.start += n;
        self.len -= n;
    }
}

impl Deref for PooledBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: this `PooledBuf` owns buffer `bid` (the kernel or our receive
        // call finished writing its bytes before the completion that created
        // us), `start + len <= size` always holds, and nobody else writes the
        // buffer until our drop hands it back.
        unsafe { std::slice::from_raw_parts(self.pool.addr(self.bid).add(self.start), self.len) }
    }
}

impl fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuf")
            .field("id", &self.bid)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        self.pool.recycle(self.bid);
    }
}
