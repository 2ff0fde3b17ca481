//! `cport chat`: the messenger. A line protocol usable from `nc` (see
//! `cport_proto::chat`): nicknames, rooms, private messages. The hub decides
//! who gets what; this file only wires it to sessions: every room message
//! is one shared buffer queued on each member, without a copy.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use cport_proto::chat::{Hub, Output};
use cport_server::{
    broadcast, DisconnectReason, FrameAction, FrameError, Framing, Handler, Message, Server, ServerBuilder, Session,
};
use parking_lot::Mutex;

use super::{announce, run_until_signal, signals, ServerArgs};

/// The default `--line-timeout`, in seconds; also what `cport serve` uses.
pub const LINE_TIMEOUT_SECS: u64 = 30;

/// `cport chat` flags.
#[derive(Args, Clone, Debug)]
pub struct ChatArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub listen: SocketAddr,
    /// The longest line accepted, in bytes; a longer one gets an error line
    /// and is dropped.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    pub max_line: usize,
    /// A client that starts a line and does not finish it within this many
    /// seconds is disconnected (slow-loris defence; 0: never).
    #[arg(long, default_value_t = LINE_TIMEOUT_SECS, value_name = "SECS")]
    pub line_timeout: u64,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The messenger: the protocol's hub plus the sessions it names.
#[derive(Default)]
pub struct Chat {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    hub: Hub,
    sessions: HashMap<u64, Session>,
    out: Output,
}

impl Inner {
    /// Sends what the hub asked for, in order, then closes who quit.
    ///
    /// Runs under the hub's lock, so every member of a room queues the
    /// room's messages in the one order the hub produced them.
    fn flush(&mut self) {
        let Inner { sessions, out, .. } = self;
        for d in out.deliveries() {
            broadcast(d.to.iter().filter_map(|id| sessions.get(id)), d.data);
        }
        for id in out.closes() {
            if let Some(s) = sessions.get(id) {
                s.close();
            }
        }
        out.clear();
    }
}

impl Handler for Chat {
    type State = ();

    fn on_connect(&self, session: &Session) {
        let mut g = self.inner.lock();
        g.sessions.insert(session.id(), session.clone());
        let Inner { hub, out, .. } = &mut *g;
        hub.connect(session.id(), out);
        g.flush();
    }

    fn on_message(&self, session: &Session, _: &mut (), msg: Message) {
        let mut g = self.inner.lock();
        let Inner { hub, out, .. } = &mut *g;
        hub.line(session.id(), &msg, out);
        g.flush();
    }

    fn on_disconnect(&self, session: &Session, _: (), _: &DisconnectReason) {
        let mut g = self.inner.lock();
        g.sessions.remove(&session.id());
        let Inner { hub, out, .. } = &mut *g;
        hub.disconnect(session.id(), out);
        g.flush();
    }

    fn on_frame_error(&self, session: &Session, _: &mut (), err: &FrameError) -> FrameAction {
        match err {
            FrameError::TooLarge { max, .. } => {
                let _ = session.send(format!("! line too long (at most {max} bytes); dropped\n"));
                FrameAction::Skip
            }
            FrameError::Malformed(_) => FrameAction::Close,
        }
    }
}

/// A builder for the chat server on `addr` with `args`.
pub fn builder(addr: SocketAddr, args: &ChatArgs) -> ServerBuilder {
    let line_timeout = (args.line_timeout > 0).then(|| Duration::from_secs(args.line_timeout));
    args.server
        .apply(Server::builder().name("chat").bind(addr))
        .framing(Framing::Lines {
            max_line: args.max_line.max(1),
        })
        .frame_timeout(line_timeout)
}

/// Runs `cport chat` until SIGINT/SIGTERM.
pub fn run(args: ChatArgs) -> io::Result<()> {
    let sig = signals()?;
    let server = builder(args.listen, &args).start(Chat::default())?;
    announce("chat", &server);
    run_until_signal(sig, vec![("chat", server)], args.server.shutdown_deadline());
    Ok(())
}
