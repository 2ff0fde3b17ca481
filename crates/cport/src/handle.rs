//! The handle table: associated fds, generation-checked, closed after
//! their last operation.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::error::SubmitErrorKind;
use crate::id::Handle;
use crate::index::GenIndex;
use crate::key::Key;

struct Slot {
    gen: u32,
    fd: Option<OwnedFd>,
    inflight: u32,
    closing: bool,
}

/// The port's table of associated fds.
pub(crate) struct HandleTable {
    /// The owning port's identity, stamped on every handle.
    port: u32,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

/// What the port must do after an operation on a handle finished.
pub(crate) enum Released {
    Nothing,
    /// The handle was closing and this was its last operation: close this fd.
    Close(OwnedFd),
}

impl HandleTable {
    pub(crate) fn new(port: u32) -> Self {
        HandleTable {
            port,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    pub(crate) fn insert(&mut self, fd: OwnedFd, key: Key) -> Handle {
        self.live += 1;
        if let Some(idx) = self.free.pop() {
            let slot = &mut self.slots[idx as usize];
            slot.fd = Some(fd);
            slot.inflight = 0;
            slot.closing = false;
            return Handle {
                slot: GenIndex::new(idx, slot.gen),
                port: self.port,
                key,
            };
        }
        let idx = u32::try_from(self.slots.len()).expect("fewer than 2^32 handles");
        self.slots.push(Slot {
            gen: 0,
            fd: Some(fd),
            inflight: 0,
            closing: false,
        });
        Handle {
            slot: GenIndex::new(idx, 0),
            port: self.port,
            key,
        }
    }

    fn slot(&mut self, h: &Handle) -> Result<&mut Slot, SubmitErrorKind> {
        if h.port != self.port {
            return Err(SubmitErrorKind::ForeignPort);
        }
        match self.slots.get_mut(h.slot.index() as usize) {
            Some(s) if s.gen == h.slot.generation() && s.fd.is_some() => Ok(s),
            _ => Err(SubmitErrorKind::InvalidHandle),
        }
    }

    /// Counts one more operation on `h` and returns its fd.
    pub(crate) fn begin_op(&mut self, h: &Handle) -> Result<RawFd, SubmitErrorKind> {
        let s = self.slot(h)?;
        if s.closing {
            return Err(SubmitErrorKind::Closing);
        }
        s.inflight += 1;
        Ok(s.fd.as_ref().expect("live slot has an fd").as_raw_fd())
    }

    /// The fd of a live handle, without counting an operation.
    pub(crate) fn raw_fd(&mut self, h: &Handle) -> Result<RawFd, SubmitErrorKind> {
        let s = self.slot(h)?;
        Ok(s.fd.as_ref().expect("live slot has an fd").as_raw_fd())
    }

    /// An operation counted by `begin_op` on slot `idx` has finished.
    pub(crate) fn end_op(&mut self, idx: u32) -> Released {
        let Some(s) = self.slots.get_mut(idx as usize) else {
            return Released::Nothing;
        };
        s.inflight = s.inflight.saturating_sub(1);
        if s.closing && s.inflight == 0 {
            self.retire(idx)
        } else {
            Released::Nothing
        }
    }

    /// Marks `h` closing. Returns its fd (for cancelling) and, when nothing is
    /// in flight, the fd itself to close now.
    pub(crate) fn close(&mut self, h: &Handle) -> Result<(RawFd, Released), SubmitErrorKind> {
        let s = self.slot(h)?;
        if s.closing {
            return Err(SubmitErrorKind::Closing);
        }
        s.closing = true;
        let raw = s.fd.as_ref().expect("live slot has an fd").as_raw_fd();
        let rel = if s.inflight == 0 {
            self.retire(h.slot.index())
        } else {
            Released::Nothing
        };
        Ok((raw, rel))
    }

    fn retire(&mut self, idx: u32) -> Released {
        let s = &mut self.slots[idx as usize];
        let fd = s.fd.take();
        s.gen = GenIndex::next_generation(s.gen);
        s.closing = false;
        self.free.push(idx);
        self.live -= 1;
        fd.map_or(Released::Nothing, Released::Close)
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests;
