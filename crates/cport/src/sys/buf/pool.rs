//! Provided-buffer pools: receive memory picked only when data arrives.
//!
//! A connection that is idle pins no buffer (IOCP's "zero-byte recv"
//! problem): the io_uring backend registers the pool as a provided-buffer ring
//! and the kernel picks a buffer at receive time; the epoll backend takes one
//! from a free list only when the socket is readable.

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU16, AtomicU64};
use std::sync::Arc;

/// A ring of buffer slots registered with the kernel, which takes a buffer
/// from it when data arrives (io_uring's provided-buffer ring). The backend
/// that registers it implements this, so buffer memory needs nothing of
/// the backends.
pub(crate) trait KernelRing: Send + Sync {
    /// Publishes buffer `bid` (at `addr`, `len` bytes) for the kernel to fill.
    fn give_back(&self, bid: u16, addr: *mut u8, len: usize);
    /// The buffer group id receives name to pick from this ring.
    fn group(&self) -> u16;
}

/// How buffers go back to whoever hands them out.
pub(crate) enum Provider {
    /// io_uring: a registered provided-buffer ring.
    Ring(Box<dyn KernelRing>),
    /// epoll: a free list of buffer ids.
    List(FreeStack),
}

/// A lock-free LIFO stack of buffer ids (a Treiber stack): one
/// compare-and-swap per take or give-back, from any thread, and the buffer
/// given back last is taken first, while it is still in the cache.
///
/// The head word packs the top id (low 16 bits, `EMPTY` for none) with a
/// tag bumped by every change, so a head that was popped and pushed back
/// between a reader's load and its swap (ABA) fails the swap.
pub(crate) struct FreeStack {
    head: AtomicU64,
    /// `next[id]`: the id below `id` on the stack.
    next: Box<[AtomicU16]>,
}

const EMPTY: u16 = u16::MAX;

impl FreeStack {
    /// A stack holding ids `0..count`, 0 on top. `count` is at most 32768.
    pub(crate) fn full(count: u16) -> Self {
        let next = (0..count)
            .map(|i| AtomicU16::new(if i + 1 < count { i + 1 } else { EMPTY }))
            .collect();
        FreeStack {
            head: AtomicU64::new(if count > 0 { 0 } else { EMPTY as u64 }),
            next,
        }
    }

    pub(crate) fn pop(&self) -> Option<u16> {
        let mut head = self.head.load(Acquire);
        loop {
            let top = head as u16;
            if top == EMPTY {
                return None;
            }
            // A stale `next` (the top changed meanwhile) fails the swap below.
            let below = self.next[top as usize].load(Relaxed);
            let new = ((head >> 16).wrapping_add(1) << 16) | below as u64;
            match self.head.compare_exchange_weak(head, new, AcqRel, Acquire) {
                Ok(_) => return Some(top),
                Err(h) => head = h,
            }
        }
    }

    pub(crate) fn push(&self, id: u16) {
        let mut head = self.head.load(Relaxed);
        loop {
            self.next[id as usize].store(head as u16, Relaxed);
            let new = ((head >> 16).wrapping_add(1) << 16) | id as u64;
            match self.head.compare_exchange_weak(head, new, Release, Relaxed) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }
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
    /// A pool of `count` buffers of `size` bytes (checked by `Port::buf_pool`),
    /// allocated page-aligned in one block.
    pub(crate) fn new(count: u16, size: usize, provider: Provider, owner: u64) -> std::io::Result<Self> {
        let total = (count as usize)
            .checked_mul(size)
            .filter(|t| *t > 0)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty buffer pool"))?;
        let layout = Layout::from_size_align(total, 4096)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "buffer pool too large"))?;
        // Zeroed, so the buffers are initialised bytes from the start (the
        // epoll backend reads into them through `&mut [u8]`); a large block
        // comes from fresh zero pages at no extra cost.
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let mem = NonNull::new(ptr).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        Ok(PoolInner {
            mem,
            layout,
            size,
            count,
            provider,
            owner,
        })
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
            Provider::List(free) => free.push(bid),
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
            Provider::List(free) => free.pop().map(|bid| (bid, self.inner.addr(bid), self.inner.size)),
            Provider::Ring(_) => None,
        }
    }

    /// Gives an unused buffer back (epoll backend, after an empty read).
    pub(crate) fn untake(&self, bid: u16) {
        self.inner.recycle(bid);
    }

    pub(crate) fn bgid(&self) -> Option<u16> {
        match &self.inner.provider {
            Provider::Ring(r) => Some(r.group()),
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

#[cfg(all(test, not(cport_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn free_stack_is_lifo_and_runs_dry() {
        let s = FreeStack::full(3);
        assert_eq!((s.pop(), s.pop()), (Some(0), Some(1)));
        s.push(0);
        assert_eq!((s.pop(), s.pop(), s.pop()), (Some(0), Some(2), None));
        s.push(2);
        assert_eq!((s.pop(), s.pop()), (Some(2), None));
    }

    /// Threads race taking and giving back: no id is ever held twice, and
    /// every id is on the stack once at the end.
    #[test]
    fn free_stack_never_hands_out_an_id_twice() {
        const N: u16 = 16;
        let s = Arc::new(FreeStack::full(N));
        let held: Arc<Vec<AtomicBool>> = Arc::new((0..N).map(|_| AtomicBool::new(false)).collect());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (s, held) = (s.clone(), held.clone());
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..50_000u32 {
                        if (i + t) % 3 != 0 || mine.is_empty() {
                            if let Some(id) = s.pop() {
                                assert!(!held[id as usize].swap(true, AcqRel), "id {id} handed out twice");
                                mine.push(id);
                            }
                        } else {
                            let id = mine.swap_remove(i as usize % mine.len());
                            held[id as usize].store(false, Release);
                            s.push(id);
                        }
                    }
                    for id in mine {
                        held[id as usize].store(false, Release);
                        s.push(id);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut all: Vec<u16> = std::iter::from_fn(|| s.pop()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..N).collect::<Vec<_>>());
    }
}
