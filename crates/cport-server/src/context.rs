//! What a completion on the server's port is for, in one typed value.
//!
//! The port hands back two words per completion, the handle's [`Key`] and
//! the operation's context (IOCP's completion key and OVERLAPPED). This
//! module is the only place that packs meaning into them and reads it back:
//! [`Context`] for the context word, [`session_key`] for a session's key.
//! A leaf: it imports nothing of the crate, only the core's value types.

use cport::{Ctx, GenIndex, Key};

/// Where a completion goes. Encoded in the operation's context word: the
/// top byte is the variant, the low 56 bits its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// Posted once at start: a worker arms the accepts and the timer.
    Start,
    /// The multishot accept of listener `0`.
    Accept(u32),
    /// A session's pending receive.
    Recv,
    /// A session's gathering send.
    Send,
    /// The server's one timer (see `timer`), armed to fire at this many
    /// microseconds since the server started: the completion names the
    /// deadline it was armed for.
    Timer(u64),
    /// Sessions wait in the finalize list: a worker ends them.
    Finalize,
    /// A thread that is not a worker queued a send: a worker issues it.
    SendQueued,
    /// A paused session's queue drained to the low-water mark: a worker
    /// resumes its receiving.
    Resume,
    /// The handler released its hold on a session's input: a worker runs
    /// its `on_resume`, then resumes its receiving.
    Release,
    /// An operation the application issued on the server's port with
    /// [`app_ctx`]; the payload is the application's tag.
    App(u64),
}

const SHIFT: u32 = 56;
const PAYLOAD: u64 = (1 << SHIFT) - 1;

/// The largest application tag (56 bits); higher bits of a tag are dropped.
pub const MAX_APP_TAG: u64 = PAYLOAD;

impl Context {
    /// The context word.
    pub(crate) fn encode(self) -> u64 {
        let (tag, payload) = match self {
            Context::Start => (1, 0),
            Context::Accept(li) => (2, li as u64),
            Context::Recv => (3, 0),
            Context::Send => (4, 0),
            Context::Timer(at) => (5, at & PAYLOAD),
            Context::Finalize => (6, 0),
            Context::SendQueued => (7, 0),
            Context::Resume => (8, 0),
            Context::Release => (10, 0),
            Context::App(t) => (9, t & PAYLOAD),
        };
        (tag << SHIFT) | payload
    }

    /// Reads a context word back; `None` for a word this server never issued.
    pub(crate) fn decode(word: u64) -> Option<Context> {
        let payload = word & PAYLOAD;
        let bare = |c| (payload == 0).then_some(c);
        match word >> SHIFT {
            1 => bare(Context::Start),
            2 => u32::try_from(payload).ok().map(Context::Accept),
            3 => bare(Context::Recv),
            4 => bare(Context::Send),
            5 => Some(Context::Timer(payload)),
            6 => bare(Context::Finalize),
            7 => bare(Context::SendQueued),
            8 => bare(Context::Resume),
            10 => bare(Context::Release),
            9 => Some(Context::App(payload)),
            _ => None,
        }
    }

    /// As a normal-priority [`Ctx`].
    pub(crate) fn ctx(self) -> Ctx {
        Ctx::new(self.encode())
    }

    /// As a high-priority [`Ctx`]: dequeued before normal completions.
    pub(crate) fn high(self) -> Ctx {
        Ctx::high(self.encode())
    }
}

/// The context for an operation the application issues on a server's port:
/// its completion goes to [`Handler::on_completion`](crate::Handler::on_completion)
/// with `tag` (56 bits; higher bits are dropped).
pub fn app_ctx(tag: u64) -> Ctx {
    Context::App(tag).ctx()
}

/// A session's completion key: its slot in the session table and the
/// slot's generation ([`GenIndex`]), so a completion of an ended session
/// never reaches a later one in the same slot.
pub(crate) fn session_key(session: GenIndex) -> Key {
    Key(session.to_u64())
}

/// The session a key names ([`session_key`] read back).
pub(crate) fn session_of(k: Key) -> GenIndex {
    GenIndex::from_u64(k.0)
}

/// The key of the server's own packets and listeners: the context says
/// what they are, so the key only has to differ from every session's
/// (no session slot reaches `u32::MAX`).
pub(crate) const SERVER_KEY: Key = Key(u32::MAX as u64);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_server_context_decodes_to_itself() {
        let all = [
            Context::Start,
            Context::Accept(0),
            Context::Accept(u32::MAX),
            Context::Recv,
            Context::Send,
            Context::Timer(0),
            Context::Timer(PAYLOAD),
            Context::Finalize,
            Context::SendQueued,
            Context::Resume,
            Context::Release,
            Context::App(0),
            Context::App(MAX_APP_TAG),
        ];
        for c in all {
            assert_eq!(Context::decode(c.encode()), Some(c), "{c:?}");
        }
    }

    #[test]
    fn words_the_server_never_issued_are_rejected() {
        assert_eq!(Context::decode(0), None);
        assert_eq!(Context::decode(u64::MAX), None);
        assert_eq!(Context::decode(Context::Recv.encode() | 1), None);
    }

    #[test]
    fn app_tags_keep_their_low_56_bits() {
        assert_eq!(
            Context::decode(app_ctx(u64::MAX).value),
            Some(Context::App(MAX_APP_TAG))
        );
        assert_eq!(Context::decode(app_ctx(42).value), Some(Context::App(42)));
    }

    proptest! {
        #[test]
        fn session_keys_round_trip(idx in 0..u32::MAX, gen in 0..=GenIndex::MAX_GENERATION) {
            let s = GenIndex::new(idx, gen);
            prop_assert_eq!(session_of(session_key(s)), s);
            prop_assert_ne!(session_key(s), SERVER_KEY);
        }
    }
}
