//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): the kernel takes a
//! buffer from it only when data arrives.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use io_uring::types::BufRingEntry;
use parking_lot::Mutex;

use io_uring::IoUring;

use crate::sys::buf::KernelRing;

/// A provided-buffer ring registered with the io_uring that `R` keeps
/// alive (the driver's shared core), unregistered at drop.
pub(crate) struct BufRing<R: AsRef<IoUring>> {
    core: Arc<R>,
    entries: NonNull<BufRingEntry>,
    layout: Layout,
    mask: u16,
    bgid: u16,
    /// Our producer tail; the kernel consumes from the head.
    tail: Mutex<u16>,
}

// SAFETY: the ring memory is only written under `tail`'s lock (by us) and read
// by the kernel up to the published tail; the raw pointer is never handed out.
unsafe impl<R: AsRef<IoUring> + Send + Sync> Send for BufRing<R> {}
// SAFETY: as for `Send`: every write goes through the `tail` mutex.
unsafe impl<R: AsRef<IoUring> + Send + Sync> Sync for BufRing<R> {}

impl<R: AsRef<IoUring>> BufRing<R> {
    /// Registers a ring of `entries` slots (a power of two) as group `bgid`.
    pub(crate) fn register(core: Arc<R>, entries: u16, bgid: u16) -> std::io::Result<Self> {
        let bytes = entries as usize * std::mem::size_of::<BufRingEntry>();
        let layout = Layout::from_size_align(bytes, 4096).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: non-zero size (entries >= 1).
        let ptr = unsafe { alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        let entries_ptr = NonNull::new(ptr).ok_or(std::io::ErrorKind::OutOfMemory)?;
        // SAFETY: the ring memory stays allocated until `drop`, which
        // unregisters the group before freeing it.
        let reg = unsafe {
            (*core)
                .as_ref()
                .submitter()
                .register_buf_ring_with_flags(ptr as u64, entries, bgid, 0)
        };
        if let Err(e) = reg {
            // SAFETY: allocated above with `layout`, never registered.
            unsafe { alloc::dealloc(ptr.cast(), layout) };
            return Err(e);
        }
        Ok(BufRing {
            core,
            entries: entries_ptr,
            layout,
            mask: entries - 1,
            bgid,
            tail: Mutex::new(0),
        })
    }
}

impl<R: AsRef<IoUring> + Send + Sync> KernelRing for BufRing<R> {
    fn group(&self) -> u16 {
        self.bgid
    }

    fn give_back(&self, bid: u16, addr: *mut u8, len: usize) {
        let mut tail = self.tail.lock();
        // SAFETY: `tail & mask` indexes inside the ring; the kernel only reads
        // slots below the published tail, and this slot is at the tail.
        unsafe {
            let e = &mut *self.entries.as_ptr().add((*tail & self.mask) as usize);
            e.set_addr(addr as u64);
            e.set_len(len as u32);
            e.set_bid(bid);
        }
        *tail = tail.wrapping_add(1);
        // SAFETY: `BufRingEntry::tail` points at the ring's shared tail field,
        // a u16 the kernel reads atomically; we publish with release ordering
        // so the entry written above is visible first.
        unsafe {
            let t = BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16;
            (*t).store(*tail, Ordering::Release);
        }
    }
}

impl<R: AsRef<IoUring>> Drop for BufRing<R> {
    fn drop(&mut self) {
        let _ = (*self.core).as_ref().submitter().unregister_buf_ring(self.bgid);
        // SAFETY: allocated in `register` with `layout`; unregistered above, so
        // the kernel no longer reads it.
        unsafe { alloc::dealloc(self.entries.as_ptr().cast(), self.layout) }
    }
}
