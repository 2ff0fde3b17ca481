//! Generational indexes: a slot number and the generation the slot had.
//!
//! A table that reuses its slots bumps a slot's generation each time it is
//! freed, and hands out the pair. A pair kept after its slot was freed and
//! reused then no longer matches: it names nothing, instead of naming the
//! slot's new occupant (a closed handle never reaches the fd number the OS
//! hands out next; a completed operation's id never cancels a later one).
//!
//! cport uses one for its handle table, its operation ids, the io_uring
//! in-flight table (packed into each request's `user_data`, IOCP's
//! `OVERLAPPED` pointer) and the epoll fd tokens. It is public so that tables
//! built on the port (a server's sessions, a timing wheel) use the same
//! encoding, and can carry it in a [`Key`](crate::Key) or a context value
//! through [`GenIndex::to_u64`].

/// A slot index and its generation, packed into one `u64` for the kernel or
/// a completion key: index in the low 32 bits, generation in the high.
///
/// Generations have 31 bits ([`GenIndex::next_generation`] wraps at
/// 2^31), so a packed value never has its top bit set: values with it set
/// are free for sentinels (wake-ups, internal requests).
///
/// # Examples
///
/// ```
/// use cport::GenIndex;
/// let id = GenIndex::new(7, 3);
/// assert_eq!(GenIndex::from_u64(id.to_u64()), id);
/// assert_eq!((id.index(), id.generation()), (7, 3));
/// assert_ne!(GenIndex::new(7, GenIndex::next_generation(3)), id);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GenIndex {
    index: u32,
    generation: u32,
}

impl GenIndex {
    /// The largest generation; the one after it is 0.
    pub const MAX_GENERATION: u32 = 0x7fff_ffff;

    /// Slot `index` at `generation` (masked to 31 bits).
    pub const fn new(index: u32, generation: u32) -> Self {
        GenIndex {
            index,
            generation: generation & Self::MAX_GENERATION,
        }
    }

    /// The slot.
    pub const fn index(self) -> u32 {
        self.index
    }

    /// The generation the slot had when this index was handed out.
    pub const fn generation(self) -> u32 {
        self.generation
    }

    /// The generation a slot takes after `generation`, wrapping at 2^31.
    pub const fn next_generation(generation: u32) -> u32 {
        generation.wrapping_add(1) & Self::MAX_GENERATION
    }

    /// Packed: generation in the high 32 bits, index in the low; the top
    /// bit is always clear.
    pub const fn to_u64(self) -> u64 {
        ((self.generation as u64) << 32) | self.index as u64
    }

    /// Unpacks [`to_u64`](Self::to_u64). The top bit is ignored.
    pub const fn from_u64(v: u64) -> Self {
        GenIndex::new(v as u32, (v >> 32) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks_every_corner() {
        for (i, g) in [
            (0, 0),
            (u32::MAX, 0),
            (0, GenIndex::MAX_GENERATION),
            (u32::MAX, GenIndex::MAX_GENERATION),
        ] {
            let id = GenIndex::new(i, g);
            assert_eq!(GenIndex::from_u64(id.to_u64()), id);
            assert_eq!(id.to_u64() >> 63, 0, "top bit stays free for sentinels");
        }
    }

    #[test]
    fn generations_wrap_within_31_bits() {
        assert_eq!(GenIndex::next_generation(GenIndex::MAX_GENERATION), 0);
        assert_eq!(GenIndex::next_generation(4), 5);
        assert_eq!(GenIndex::new(1, u32::MAX).generation(), GenIndex::MAX_GENERATION);
    }
}
