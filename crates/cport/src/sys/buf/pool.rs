//! Provided-buffer pools: receive memory picked only when data arrives.
//!
//! A connection that is idle pins no buffer (IOCP's "zero-byte recv"
//! problem): the io_uring backend registers the pool as a provided-buffer ring
//! and the kernel picks a buffer at receive time; the epoll backend takes one
//! from a free list only when the socket is readable.
//!
//! A pool sizes itself between bounds (`min..=max` buffers): the memory for
//! `max` buffers is reserved up front (address space, no pages), the first
//! `min` are put in service, and the pool doubles what is in service when a
//! receive finds it empty while most buffers are held (`note_empty`), then
//! halves it again, a period at a time, when demand stays low (`trim`). A
//! buffer taken out of service gives its pages back to the system when it
//! comes home, so memory follows the load.

use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

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
    #[cfg(test)]
    pub(crate) fn full(count: u16) -> Self {
        Self::with_capacity(count, count)
    }

    /// A stack with room for ids `0..capacity`, holding `0..count`, 0 on top.
    pub(crate) fn with_capacity(capacity: u16, count: u16) -> Self {
        let count = count.min(capacity);
        let next = (0..capacity)
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
    /// Reserved for `max` buffers; pages are committed when first written.
    mem: NonNull<u8>,
    /// The length of the mapping at `mem`.
    mapped: usize,
    size: usize,
    min: u16,
    max: u16,
    /// Buffer ids below this are in service; those above are retired (their
    /// pages given back) or never used.
    live: AtomicU32,
    /// Buffers held by a `PooledBuf` now, and the most held at once since
    /// the last `trim` period began.
    held: AtomicU32,
    peak: AtomicU32,
    sizing: Mutex<Sizing>,
    pub(crate) provider: Provider,
    /// The driver that made the pool (see `Driver::id`).
    owner: u64,
}

/// How long demand must stay low before a pool halves what is in service.
pub(crate) const TRIM_PERIOD: Duration = Duration::from_secs(1);

/// No shrink for this long after a grow: a load that comes in waves (a
/// busy server starved of CPU answers in bursts) would otherwise make the
/// pool shrink and grow again every few periods, each time giving pages
/// back and taking them again (measured at 5,000 connections on a loaded
/// machine: 0.35 system calls per message instead of 0.02).
pub(crate) const GROW_HOLD: Duration = Duration::from_secs(10);

/// The pool's resizing record, changed only under its lock.
struct Sizing {
    /// `retired[id]`: buffer `id` came home while out of service; it is in
    /// neither the provider nor anyone's hands, and its pages were given back.
    retired: Vec<bool>,
    /// Ids below this were in service at some time (the rest never were).
    used: u16,
    /// When the current trim period began (`None` until the first `trim`),
    /// and when the pool last grew.
    period: Option<Instant>,
    grown_at: Option<Instant>,
    grows: u64,
    shrinks: u64,
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
        // SAFETY: `mem` is the mapping of `mapped` bytes made in
        // `PoolInner::new`; no buffer in it is held (each `PooledBuf` keeps
        // this pool alive).
        let _ = unsafe { rustix::mm::munmap(self.mem.as_ptr().cast(), self.mapped) };
    }
}

impl PoolInner {
    /// A pool of `min..=max` buffers of `size` bytes (checked by
    /// `Port::buf_pool`): address space for `max` reserved in one
    /// page-aligned mapping, committed page by page as buffers are written.
    /// The provider must hold ids `0..min` (the driver puts them in).
    pub(crate) fn new(min: u16, max: u16, size: usize, provider: Provider, owner: u64) -> std::io::Result<Self> {
        let min = min.clamp(1, max.max(1));
        let total = (max as usize)
            .checked_mul(size)
            .filter(|t| *t > 0)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty buffer pool"))?;
        // SAFETY: a fresh private anonymous mapping of `total` (> 0) bytes;
        // MAP_NORESERVE: only the pages buffers touch are committed. An
        // anonymous mapping reads as zeros, so the buffers are initialised
        // bytes from the start (the epoll backend reads into them through
        // `&mut [u8]`).
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                total,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::NORESERVE,
            )
        }?;
        let mem =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        Ok(PoolInner {
            mem,
            mapped: total,
            size,
            min,
            max,
            live: AtomicU32::new(min as u32),
            held: AtomicU32::new(0),
            peak: AtomicU32::new(0),
            sizing: Mutex::new(Sizing {
                retired: vec![false; max as usize],
                used: min,
                period: None,
                grown_at: None,
                grows: 0,
                shrinks: 0,
            }),
            provider,
            owner,
        })
    }

    /// The address of buffer `bid`.
    pub(crate) fn addr(&self, bid: u16) -> *mut u8 {
        debug_assert!(bid < self.max);
        // SAFETY: `bid < max`, so the offset stays inside the mapping.
        unsafe { self.mem.as_ptr().add(bid as usize * self.size) }
    }

    /// Buffers in service now.
    pub(crate) fn live(&self) -> u16 {
        self.live.load(Acquire) as u16
    }

    /// Buffer `bid` came home: back to the provider, or retired if it is
    /// out of service.
    fn recycle(&self, bid: u16) {
        if bid as u32 >= self.live.load(Acquire) {
            let mut s = self.sizing.lock();
            // Rechecked under the lock: a pool that grew meanwhile wants it.
            if bid as u32 >= self.live.load(Relaxed) {
                self.retire(&mut s, bid);
                return;
            }
        }
        self.publish(bid);
    }

    fn publish(&self, bid: u16) {
        match &self.provider {
            Provider::Ring(ring) => ring.give_back(bid, self.addr(bid), self.size),
            Provider::List(free) => free.push(bid),
        }
    }

    /// Takes `bid` (ours alone now) out of service and gives its whole pages back.
    fn retire(&self, s: &mut Sizing, bid: u16) {
        s.retired[bid as usize] = true;
        let start = self.addr(bid) as usize;
        let page = 4096;
        let (lo, hi) = (start.next_multiple_of(page), (start + self.size) / page * page);
        if hi > lo {
            // SAFETY: `lo..hi` lies inside buffer `bid`, which nobody holds
            // and neither the kernel nor the free list can hand out (it is
            // in neither); its next user reads only bytes written after.
            let _ =
                unsafe { rustix::mm::madvise(lo as *mut std::ffi::c_void, hi - lo, rustix::mm::Advice::LinuxDontNeed) };
        }
    }

    /// A receive found the pool empty. Doubles what is in service (up to
    /// `max`) when at least half of it is held, so an empty moment while
    /// buffers are on their way home does not grow it. Returns whether it grew.
    pub(crate) fn note_empty(&self, now: Instant) -> bool {
        let live = self.live.load(Acquire);
        if live >= self.max as u32 || self.held.load(Relaxed) < live / 2 {
            return false;
        }
        let mut s = self.sizing.lock();
        let live = self.live.load(Relaxed);
        if live >= self.max as u32 || self.held.load(Relaxed) < live / 2 {
            return false;
        }
        let grown = (live * 2).min(self.max as u32);
        self.live.store(grown, Release);
        for bid in live as u16..grown as u16 {
            // Ids still out from before a shrink come home on their own and,
            // being in service again, are published then.
            if bid >= s.used || std::mem::take(&mut s.retired[bid as usize]) {
                self.publish(bid);
            }
        }
        s.used = s.used.max(grown as u16);
        s.grown_at = Some(now);
        s.grows += 1;
        true
    }

    /// Halves what is in service (not below `min`) when, over a whole
    /// `TRIM_PERIOD`, at most a quarter of it was held at once, and the
    /// pool has not grown for `GROW_HOLD`. Call it now and then (the server's tick does); `now`
    /// is the caller's clock. Returns whether it shrank.
    pub(crate) fn trim(&self, now: Instant) -> bool {
        let mut s = self.sizing.lock();
        let began = *s.period.get_or_insert(now);
        if now.saturating_duration_since(began) < TRIM_PERIOD {
            return false;
        }
        s.period = Some(now);
        let peak = self.peak.swap(self.held.load(Relaxed), Relaxed);
        let live = self.live.load(Relaxed);
        let quiet = s.grown_at.is_none_or(|g| now.saturating_duration_since(g) >= GROW_HOLD);
        if live <= self.min as u32 || peak > live / 4 || !quiet {
            return false;
        }
        let kept = (live / 2).max(self.min as u32);
        self.live.store(kept, Release);
        s.shrinks += 1;
        // The kernel's ring hands its buffers out in turn and they retire as
        // they come home; the free list is searched now (a take racing with
        // this may find it empty for a moment and retry).
        if let Provider::List(free) = &self.provider {
            let mut keep = Vec::new();
            while let Some(bid) = free.pop() {
                if bid as u32 >= kept {
                    self.retire(&mut s, bid);
                } else {
                    keep.push(bid);
                }
            }
            for bid in keep.into_iter().rev() {
                free.push(bid);
            }
        }
        true
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
            .field("count", &self.inner.live())
            .field("min", &self.inner.min)
            .field("max", &self.inner.max)
            .field("size", &self.inner.size)
            .finish()
    }
}

/// What a [`BufPool`] holds and how it has resized (see [`BufPool::usage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Buffers in service now (between the pool's bounds).
    pub in_service: u16,
    /// Buffers held by completions and the application now.
    pub held: u32,
    /// Times the pool grew.
    pub grows: u64,
    /// Times the pool shrank.
    pub shrinks: u64,
}

impl BufPool {
    /// How many buffers the pool has in service now (it sizes itself
    /// between [`min_count`](Self::min_count) and [`max_count`](Self::max_count)).
    pub fn count(&self) -> u16 {
        self.inner.live()
    }
    /// The fewest buffers the pool keeps in service.
    pub fn min_count(&self) -> u16 {
        self.inner.min
    }
    /// The most buffers the pool grows to.
    pub fn max_count(&self) -> u16 {
        self.inner.max
    }
    /// Buffers in service and held, and the resizes so far.
    pub fn usage(&self) -> PoolUsage {
        let s = self.inner.sizing.lock();
        PoolUsage {
            in_service: self.inner.live(),
            held: self.inner.held.load(Relaxed),
            grows: s.grows,
            shrinks: s.shrinks,
        }
    }
    /// Gives buffers back when demand stayed low for a while: halves what
    /// is in service (not below the minimum) when, over the last period of
    /// a second, at most a quarter of it was held at once, and the pool has
    /// not grown for ten seconds. Returns whether
    /// it shrank. The server core calls it on its tick; `now` is the
    /// caller's clock.
    pub fn trim(&self, now: Instant) -> bool {
        self.inner.trim(now)
    }
    /// A receive found the pool empty: grow it if most of it is held.
    pub(crate) fn note_empty(&self) -> bool {
        self.inner.note_empty(Instant::now())
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
            bid < self.inner.max,
            "buffer id {bid} outside a pool of {}",
            self.inner.max
        );
        let held = self.inner.held.fetch_add(1, Relaxed) + 1;
        if held > self.inner.peak.load(Relaxed) {
            self.inner.peak.store(held, Relaxed);
        }
        PooledBuf {
            pool: self.inner.clone(),
            bid,
            start: 0,
            len: len.min(self.inner.size),
        }
    }

    /// Takes a free buffer (epoll backend): its id and where to write.
    /// An empty list grows the pool when most of it is held (as an
    /// io_uring receive's ENOBUFS does); a buffer out of service that
    /// surfaces is retired on the way.
    pub(crate) fn take(&self) -> Option<(u16, *mut u8, usize)> {
        let Provider::List(free) = &self.inner.provider else {
            return None;
        };
        let mut grew = false;
        loop {
            match free.pop() {
                Some(bid) if bid as u32 >= self.inner.live.load(Acquire) => self.inner.recycle(bid),
                Some(bid) => return Some((bid, self.inner.addr(bid), self.inner.size)),
                None if !grew && self.note_empty() => grew = true,
                None => return None,
            }
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
        self.pool.held.fetch_sub(1, Relaxed);
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

    /// Threads take, hold and give back buffers while another grows and
    /// trims the pool as fast as it can: no id is ever held twice, and at
    /// the end every id ever in service is either free or retired, once.
    #[test]
    fn resizing_while_buffers_move_never_hands_out_an_id_twice() {
        // A few short races catch more interleavings than one long one.
        let (mut grew, mut shrank) = (0, 0);
        for _ in 0..6 {
            let (g, s) = resize_race();
            (grew, shrank) = (grew + g, shrank + s);
        }
        assert!(
            grew > 0 && shrank > 0,
            "the race was run: {grew} grows, {shrank} shrinks"
        );
    }

    /// One race; returns the grows and shrinks it saw.
    fn resize_race() -> (u32, u32) {
        const MAX: u16 = 64;
        let provider = Provider::List(FreeStack::with_capacity(MAX, 4));
        let pool = BufPool {
            inner: Arc::new(PoolInner::new(4, MAX, 4096, provider, 0).unwrap()),
        };
        let held: Arc<Vec<AtomicBool>> = Arc::new((0..MAX).map(|_| AtomicBool::new(false)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(std::sync::Barrier::new(4));
        let sizer = {
            let (pool, stop, start) = (pool.clone(), stop.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut now = Instant::now();
                let (mut grew, mut shrank) = (0, 0);
                while !stop.load(Acquire) {
                    now += GROW_HOLD;
                    shrank += pool.trim(now) as u32;
                    grew += pool.note_empty() as u32;
                }
                (grew, shrank)
            })
        };
        let users: Vec<_> = (0..3)
            .map(|t| {
                let (pool, held, start) = (pool.clone(), held.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut mine = Vec::new();
                    for i in 0..20_000u32 {
                        if (i + t) % 4 != 0 {
                            if let Some((bid, _, _)) = pool.take() {
                                assert!(!held[bid as usize].swap(true, AcqRel), "id {bid} handed out twice");
                                mine.push(pool.claim(bid, 1));
                            }
                        }
                        if mine.len() > 8 || (i + t) % 4 == 0 && !mine.is_empty() {
                            let b = mine.swap_remove(i as usize % mine.len());
                            held[b.id() as usize].store(false, Release);
                            drop(b);
                        }
                    }
                    for b in mine {
                        held[b.id() as usize].store(false, Release);
                    }
                })
            })
            .collect();
        for u in users {
            u.join().unwrap();
        }
        stop.store(true, Release);
        let (grew, shrank) = sizer.join().unwrap();
        assert_eq!(pool.usage().held, 0);
        let Provider::List(free) = &pool.inner.provider else {
            unreachable!()
        };
        let mut ids: Vec<u16> = std::iter::from_fn(|| free.pop()).collect();
        let s = pool.inner.sizing.lock();
        ids.extend((0..MAX).filter(|&b| s.retired[b as usize]));
        ids.sort_unstable();
        assert_eq!(ids, (0..s.used).collect::<Vec<_>>(), "each id free or retired, once");
        (grew, shrank)
    }
}
