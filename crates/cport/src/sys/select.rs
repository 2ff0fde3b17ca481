//! `select(2)` over borrowed descriptors: the oldest readiness model, kept
//! for the I/O-models demo (`cport models`), which shows where it stops.
//!
//! rustix's `select` takes raw descriptor numbers, so it is `unsafe`; here
//! a set borrows every descriptor it holds for as long as it lives, so each
//! one is open during the call, and `unsafe` stays in `sys/`.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use rustix::event::{fd_set_insert, FdSetElement, FdSetIter, Timespec};

/// Descriptor numbers a set holds: 0 to `FD_SETSIZE - 1`, as with C's `fd_set`.
pub const FD_SETSIZE: usize = 1024;

const WORDS: usize = FD_SETSIZE / 64;

/// A set of descriptors for [`select`], borrowing each one it holds.
#[derive(Clone, Debug, Default)]
pub struct FdSet<'fd> {
    bits: [u64; WORDS],
    fds: PhantomData<BorrowedFd<'fd>>,
}

impl<'fd> FdSet<'fd> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `fd`; `false` (and not added) for a number at or above [`FD_SETSIZE`].
    pub fn insert(&mut self, fd: BorrowedFd<'fd>) -> bool {
        match usize::try_from(fd.as_raw_fd()) {
            Ok(n) if n < FD_SETSIZE => {
                self.bits[n / 64] |= 1 << (n % 64);
                true
            }
            _ => false,
        }
    }

    /// Whether `fd` is in the set (after [`select`]: whether it is ready).
    pub fn contains(&self, fd: BorrowedFd<'_>) -> bool {
        usize::try_from(fd.as_raw_fd()).is_ok_and(|n| n < FD_SETSIZE && self.bits[n / 64] & (1 << (n % 64)) != 0)
    }

    /// One past the highest descriptor in the set (0 when empty).
    fn bound(&self) -> usize {
        match self.bits.iter().rposition(|&w| w != 0) {
            Some(i) => i * 64 + 64 - self.bits[i].leading_zeros() as usize,
            None => 0,
        }
    }

    /// The set in the kernel's layout, `words` elements long.
    fn to_kernel(&self, words: usize) -> Vec<FdSetElement> {
        let mut out = vec![FdSetElement::default(); words];
        for (i, &w) in self.bits.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                let bit = w.trailing_zeros() as usize;
                fd_set_insert(&mut out, (i * 64 + bit) as i32);
                w &= w - 1;
            }
        }
        out
    }

    /// Keeps only the descriptors the kernel left set in `k`.
    fn keep_ready(&mut self, k: &[FdSetElement]) {
        self.bits = [0; WORDS];
        for fd in FdSetIter::new(k) {
            let n = fd as usize;
            self.bits[n / 64] |= 1 << (n % 64);
        }
    }
}

/// Waits up to `timeout` until a descriptor in `read` is readable or one in
/// `write` is writable, and leaves only the ready ones in each set. Returns
/// how many are ready (0 on timeout). EINTR comes back as an error.
///
/// # Errors
/// The system call's.
pub fn select(read: &mut FdSet<'_>, write: &mut FdSet<'_>, timeout: Duration) -> io::Result<usize> {
    let nfds = read.bound().max(write.bound());
    let words = rustix::event::fd_set_num_elements(FD_SETSIZE, nfds as i32).max(1);
    let (mut r, mut w) = (read.to_kernel(words), write.to_kernel(words));
    let ts = Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    // SAFETY: every descriptor in `r` and `w` was inserted into `read` or
    // `write` as a `BorrowedFd` that the set holds for its lifetime, which
    // outlasts this call: each one is open. Both arrays hold `nfds` bits.
    let n = unsafe { rustix::event::select(nfds as i32, Some(&mut r), Some(&mut w), None, Some(&ts)) }?;
    read.keep_ready(&r);
    write.keep_ready(&w);
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn select_leaves_only_the_ready_descriptors() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let _d = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (c, _) = l.accept().unwrap();

        // Nothing to read yet: a timeout, and the sets come back empty.
        let (mut r, mut w) = (FdSet::new(), FdSet::new());
        assert!(r.insert(b.as_fd()) && r.insert(c.as_fd()));
        assert_eq!(select(&mut r, &mut w, Duration::from_millis(10)).unwrap(), 0);
        assert!(!r.contains(b.as_fd()) && !r.contains(c.as_fd()));

        // `b` has bytes: only `b` is readable; `a` (fresh) is writable.
        a.write_all(b"x").unwrap();
        let (mut r, mut w) = (FdSet::new(), FdSet::new());
        r.insert(b.as_fd());
        r.insert(c.as_fd());
        w.insert(a.as_fd());
        assert_eq!(select(&mut r, &mut w, Duration::from_secs(5)).unwrap(), 2);
        assert!(r.contains(b.as_fd()) && !r.contains(c.as_fd()) && w.contains(a.as_fd()));
        assert!(!w.contains(b.as_fd()));
    }

    #[test]
    fn a_set_refuses_numbers_at_or_above_fd_setsize() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let high = rustix::io::fcntl_dupfd_cloexec(&f, FD_SETSIZE as i32).unwrap();
        let mut s = FdSet::new();
        assert!(!s.insert(high.as_fd()));
        assert!(!s.contains(high.as_fd()));
        assert!(s.insert(f.as_fd()) && s.contains(f.as_fd()));
        assert_eq!(s.bound(), f.as_raw_fd() as usize + 1);
    }
}
