//! What the application implements.

use cport::Completion;
use cport_proto::framing::FrameError;

use crate::error::DisconnectReason;
use crate::message::{FrameAction, Message};
use crate::session::{ServerHandle, Session};

/// The application's side of a server: called by the worker threads.
///
/// For one session, calls never overlap and come in order: `on_connect`
/// first, then `on_message` once per message in the order the bytes
/// arrived, then `on_disconnect` exactly once. Different sessions are
/// handled in parallel when the server has more than one worker thread.
/// Handlers should not block: a worker that blocks holds up every session
/// it would serve next. A panic in a handler method is caught: it is
/// logged and ends that session ([`DisconnectReason::HandlerPanicked`]).
///
/// # Examples
///
/// ```no_run
/// use cport_server::{Handler, Message, Server, Session};
///
/// struct Echo;
/// impl Handler for Echo {
///     type State = ();
///     fn on_connect(&self, _: &Session) {}
///     fn on_message(&self, s: &Session, _: &mut (), msg: Message) {
///         let _ = s.send(msg); // the receive buffer goes back out, no copy
///     }
/// }
///
/// let server = Server::builder().bind("127.0.0.1:7000".parse().unwrap()).start(Echo)?;
/// println!("listening on {}", server.local_addr());
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Per-session state, created by `on_connect` and handed back to
    /// `on_disconnect`. Use `()` when the handler keeps none.
    type State: Send + 'static;

    /// A connection was accepted. Runs before any message of the session.
    fn on_connect(&self, session: &Session) -> Self::State;

    /// One message arrived (a chunk for raw framing, else one decoded frame).
    fn on_message(&self, session: &Session, state: &mut Self::State, msg: Message);

    /// The session ended; its handle no longer sends. Called exactly once.
    fn on_disconnect(&self, session: &Session, state: Self::State, reason: &DisconnectReason) {
        let _ = (session, state, reason);
    }

    /// The handler released its hold on the session's input
    /// ([`Session::resume_receiving`]): continue with what was held back
    /// (for example requests that followed in the same chunk). Runs before
    /// receiving resumes, in order with `on_message`.
    fn on_resume(&self, session: &Session, state: &mut Self::State) {
        let _ = (session, state);
    }

    /// A received frame broke the codec's rules. The default ends the session;
    /// return [`FrameAction::Skip`] to drop the frame and go on (after, for
    /// example, sending the peer an error line).
    fn on_frame_error(&self, session: &Session, state: &mut Self::State, err: &FrameError) -> FrameAction {
        let _ = (session, state, err);
        FrameAction::Close
    }

    /// The session's timer ([`Session::set_timer`]) came due. Runs on a
    /// worker, never at the same time as the session's other calls. The
    /// default does nothing.
    fn on_timer(&self, session: &Session, state: &mut Self::State) {
        let _ = (session, state);
    }

    /// An operation the application issued on the server's port (see
    /// [`ServerHandle::port`]) with [`app_ctx`](crate::app_ctx)`(tag)`
    /// completed: its own socket's receive, its timer, a job it posted.
    /// Runs on a worker like the sessions' calls, exactly once per
    /// operation, also when the operation was cancelled or the server shut
    /// down (then with an error). The default drops it.
    fn on_completion(&self, server: &ServerHandle, tag: u64, completion: Completion) {
        let _ = (server, tag, completion);
    }
}
