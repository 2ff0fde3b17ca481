//! What a completion on the server's port is for, in one typed value.
//!
//! The port hands back two words per completion, the handle's [`Key`] and
//! the operation's context (IOCP's completion key and OVERLAPPED). This
//! module is the only place that packs meaning into them and reads it back:
//! [`Context`] for the context word, [`session_key`] for a session's key.
//! A leaf: it imports nothing of the crate, only the core's value types.

use cport::{Ctx, GenIndex, Key};

/// Where a completion goes. Encoded in the operation's context word: the
/// top byte is the variant, the next byte the server's route on a shared
/// [`Runtime`](crate::Runtime) (0 for a server with a port of its own),
/// the low 48 bits the variant's payload.
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
    /// microseconds since the server started (48 bits: 8.9 years): the
    /// completion names the deadline it was armed for.
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
const ROUTE_SHIFT: u32 = 48;
const PAYLOAD: u64 = (1 << ROUTE_SHIFT) - 1;

/// The largest application tag (48 bits); higher bits of a tag are dropped.
pub const MAX_APP_TAG: u64 = PAYLOAD;

/// Which server on a shared [`Runtime`](crate::Runtime) a completion
/// belongs to: the second byte of its context word. 0 names no server (a
/// server with a port of its own ignores the byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Route(pub u8);

impl Route {
    /// The route a context word carries.
    pub(crate) fn of(word: u64) -> Route {
        Route((word >> ROUTE_SHIFT) as u8)
    }
}

thread_local! {
    /// The route of the server whose completion this runtime worker is
    /// running (0 elsewhere): what [`app_ctx`] stamps on a context.
    static CURRENT_ROUTE: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// Marks the calling thread as running `route`'s completion (a runtime
/// worker, before it hands a completion to its server).
pub(crate) fn enter_route(route: Route) {
    CURRENT_ROUTE.with(|r| r.set(route.0));
}

impl Context {
    /// The context word, for the server on `route`.
    pub(crate) fn encode_on(self, route: Route) -> u64 {
        self.encode() | ((route.0 as u64) << ROUTE_SHIFT)
    }

    /// The context word, without a route.
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

    /// Reads a context word back (whatever its route); `None` for a word
    /// this server never issued.
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

    /// As a normal-priority [`Ctx`] for the server on `route`.
    pub(crate) fn ctx(self, route: Route) -> Ctx {
        Ctx::new(self.encode_on(route))
    }

    /// As a high-priority [`Ctx`]: dequeued before normal completions.
    pub(crate) fn high(self, route: Route) -> Ctx {
        Ctx::high(self.encode_on(route))
    }
}

/// The context for an operation the application issues on a server's port:
/// its completion goes to [`Handler::on_completion`](crate::Handler::on_completion)
/// with `tag` (48 bits; higher bits are dropped).
///
/// On a [`Runtime`](crate::Runtime) shared by several servers the context
/// also names the server: the one whose handler the calling worker is
/// running. From any other thread use
/// [`ServerHandle::app_ctx`](crate::ServerHandle::app_ctx), which names
/// its server explicitly.
pub fn app_ctx(tag: u64) -> Ctx {
    Context::App(tag).ctx(Route(CURRENT_ROUTE.with(|r| r.get())))
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
    fn app_tags_keep_their_low_48_bits() {
        assert_eq!(
            Context::decode(app_ctx(u64::MAX).value),
            Some(Context::App(MAX_APP_TAG))
        );
        assert_eq!(Context::decode(app_ctx(42).value), Some(Context::App(42)));
    }

    #[test]
    fn a_route_travels_beside_every_context_and_changes_none() {
        for c in [Context::Start, Context::Recv, Context::Timer(PAYLOAD), Context::App(7)] {
            for r in [0u8, 1, 200, 255] {
                let w = c.encode_on(Route(r));
                assert_eq!(Context::decode(w), Some(c), "{c:?} on {r}");
                assert_eq!(Route::of(w), Route(r));
            }
        }
    }

    #[test]
    fn app_ctx_names_the_route_of_the_worker_running_it() {
        enter_route(Route(9));
        let w = app_ctx(5).value;
        enter_route(Route(0));
        assert_eq!((Route::of(w), Context::decode(w)), (Route(9), Some(Context::App(5))));
        assert_eq!(Route::of(app_ctx(5).value), Route(0));
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
