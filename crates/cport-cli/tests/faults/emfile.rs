//! EMFILE at accept: the server runs out of descriptors while connections
//! keep arriving. It must not spin on the failing accept, must keep serving
//! the clients it has, and must accept again once fds are free.

use std::net::TcpStream;
use std::time::Duration;

use crate::clients::{connect, echo_once, echo_works, eventually, warm_echo};
use crate::server::{Backend, Launch, Tolerance};

/// The server's `RLIMIT_NOFILE`: about 40 connections above its own ~9 fds.
const NOFILE: u64 = 48;
/// Connections opened at once: well past the limit.
const FLOOD: usize = 120;

pub fn case(b: Backend) {
    let server = Launch::new(&["echo", "--listen", "127.0.0.1:0"], &["echo"])
        .nofile(NOFILE)
        .spawn(b);
    let addr = server.addr("echo");
    warm_echo(addr);
    let mut kept = connect(addr);
    echo_once(&mut kept, 100).unwrap();
    let before = server.quiet_usage();
    assert!(before.fds < NOFILE as usize - 10, "{before:?}");

    let flood: Vec<TcpStream> = (0..FLOOD).map(|_| connect(addr)).collect();
    assert!(
        eventually(Duration::from_secs(5), || server.usage().fds >= NOFILE as usize - 1),
        "the server never reached its fd limit: {:?}",
        server.usage()
    );
    // Out of fds with connections waiting in the backlog: the accept fails
    // on every try, so a server that retries at once burns a core.
    let cpu0 = server.usage().cpu;
    std::thread::sleep(Duration::from_secs(2));
    let spent = server.usage().cpu - cpu0;
    assert!(
        spent < Duration::from_millis(500),
        "{b:?}: {spent:?} of CPU in 2 s at EMFILE: a spin"
    );
    // Clients it has are served meanwhile.
    for _ in 0..10 {
        echo_once(&mut kept, 4096).expect("an existing client is served at EMFILE");
    }

    // Recovery: once fds are free, new clients are served.
    drop(flood);
    assert!(
        eventually(Duration::from_secs(10), || echo_works(addr)),
        "{b:?}: no recovery after fds were freed"
    );
    echo_once(&mut kept, 100).unwrap();
    drop(kept);
    server.assert_flat(&before, Tolerance::CONNECTIONS);
    server.assert_no_panic();
}
