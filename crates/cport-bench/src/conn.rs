//! Opening many client connections on the port, with optional source
//! addresses so that 100,000 connections do not exhaust one address's ports.

use std::io;
use std::net::{IpAddr, SocketAddr};

use cport::{Buf, Completion, Handle, Key, Payload, Port};
use socket2::{Domain, Protocol, Socket, Type};

/// Creates a TCP socket for `target`, bound to `source` if given, associates
/// it under `key` and issues a connect with `ctx`.
///
/// # Errors
/// Socket creation, bind or association failures (the connect's own result
/// arrives as a completion).
pub fn open(port: &Port, target: SocketAddr, source: Option<IpAddr>, key: u64, ctx: u64) -> io::Result<Handle> {
    let sock = Socket::new(Domain::for_address(target), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    let h = port.associate(sock, Key(key))?;
    port.connect(&h, target, ctx)?;
    Ok(h)
}

/// The `i`-th of `spread` loopback source addresses (127.0.0.1, .2, ...), or
/// none when the target is not loopback IPv4 or `spread` is 1.
pub fn source_for(target: SocketAddr, i: usize, spread: usize) -> Option<IpAddr> {
    match target.ip() {
        IpAddr::V4(v4) if v4.is_loopback() && spread > 1 => {
            let n = (i % spread) as u32;
            Some(IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0001 + n)))
        }
        _ => None,
    }
}

/// Settles a send's completion: a short send is finished with the rest of
/// the same bytes (issued again with `ctx`). `false` when the send failed.
pub fn finish_send(port: &Port, h: &Handle, c: Completion, ctx: u64) -> bool {
    match c.into_parts() {
        (Ok(n), Payload::Buf(Buf::Bytes(b))) => {
            if n < b.len() {
                let _ = port.send(h, b.slice(n..), ctx);
            }
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_over_loopback_addresses() {
        let t: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(source_for(t, 0, 4), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(source_for(t, 5, 4), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(source_for(t, 5, 1), None);
        assert_eq!(source_for("10.0.0.1:80".parse().unwrap(), 5, 4), None);
    }
}
