//! `cport echo`: every byte received goes back, unframed. The benchmark
//! workhorse: the pooled receive buffer itself is queued for sending (no
//! copy), and with one worker thread each connection keeps one multishot
//! receive armed for its whole life.

use std::io;
use std::net::SocketAddr;

use clap::Args;
use cport_server::{Handler, Message, Server, ServerBuilder, Session};

use super::{announce, run_until_signal, signals, ServerArgs};

/// `cport echo` flags.
#[derive(Args, Clone, Debug)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The echo handler.
pub struct Echo;

impl Handler for Echo {
    type State = ();

    fn on_connect(&self, _: &Session) {}

    fn on_message(&self, session: &Session, _: &mut (), msg: Message) {
        // Closed or cut off as a slow consumer: nothing more to do here.
        let _ = session.send(msg);
    }
}

/// A builder for the echo server on `addr` with `args`.
pub fn builder(addr: SocketAddr, args: &ServerArgs) -> ServerBuilder {
    args.apply(Server::builder().name("echo").bind(addr))
}

/// Runs `cport echo` until SIGINT/SIGTERM.
pub fn run(args: EchoArgs) -> io::Result<()> {
    let sig = signals()?;
    let server = builder(args.listen, &args.server).start(Echo)?;
    announce("echo", &server);
    run_until_signal(sig, vec![("echo", server)], args.server.shutdown_deadline());
    Ok(())
}
