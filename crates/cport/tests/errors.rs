//! Error paths: refused and reset connections, closed handles, cancellation.
//! Every accepted operation still completes exactly once, and every buffer
//! comes back, in the completion or in the submit error.

use cport_testutil::port as util;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cport::{Buf, Key, OpKind, Payload, SubmitError, SubmitErrorKind};
use rustix::io::Errno;
use util::*;

/// The completion is a cancellation that handed the marked `Vec` back intact.
fn assert_cancelled_with_buffer_back(c: &mut cport::Completion) {
    assert!(c.is_cancelled(), "{:?}", c.result());
    let v = vec_of(c);
    assert_marked(&v, v.capacity());
}

/// The `Vec` a submit error handed back.
fn vec_back(e: SubmitError) -> Vec<u8> {
    match e.payload {
        Payload::Buf(Buf::Vec(v)) => v,
        other => panic!("expected the Vec back, got {other:?}"),
    }
}

/// A buffer with both contents and spare capacity, to check it comes back whole.
fn marked_buf() -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(b"keep");
    v
}

fn assert_marked(v: &[u8], capacity: usize) {
    assert_eq!(v, b"keep");
    assert_eq!(capacity, 64);
}

backend_tests! {
    fn connect_to_a_closed_port_is_refused(backend: Backend) {
        let port = port(backend);
        let addr = {
            let l = listener();
            l.local_addr().unwrap()
        }; // closed: nothing listens there now
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let h = port.associate(TcpStream::from(sock), Key(1)).unwrap();
        port.connect(&h, addr, 1u64).unwrap();
        let c = next_of(&port, OpKind::Connect, 1);
        assert_eq!(errno(&c), Some(Errno::CONNREFUSED.raw_os_error()), "{:?}", c.result());
        assert_eq!(port.stats().errors, 1);
    }

    fn reset_by_peer_fails_pending_recv_then_send(backend: Backend) {
        let port = port(backend);
        let (h, peer) = associated_pair(&port, Key(1));
        port.recv(&h, marked_buf(), 1u64).unwrap();
        socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO)).unwrap();
        drop(peer); // linger 0: the close sends RST
        let mut c = next_of(&port, OpKind::Recv, 1);
        assert_eq!(errno(&c), Some(Errno::CONNRESET.raw_os_error()), "{:?}", c.result());
        let v = vec_of(&mut c);
        assert_marked(&v, v.capacity());
        port.send(&h, "anyone there?", 2u64).unwrap();
        let c = next_of(&port, OpKind::Send, 2);
        assert!(matches!(errno(&c).map(Errno::from_raw_os_error), Some(Errno::PIPE | Errno::CONNRESET)), "{:?}", c.result());
    }

    fn send_to_a_reset_peer_fails(backend: Backend) {
        let port = port(backend);
        let (h, peer) = associated_pair(&port, Key(1));
        socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO)).unwrap();
        drop(peer);
        // The reset may be processed a moment after the close: sends before
        // it succeed (buffered); the first one after must fail cleanly.
        for ctx in 0..1000u64 {
            port.send(&h, "x", ctx).unwrap();
            let c = next_of(&port, OpKind::Send, ctx);
            match errno(&c).map(Errno::from_raw_os_error) {
                None => assert_eq!(c.bytes(), 1),
                Some(Errno::PIPE | Errno::CONNRESET) => return,
                Some(e) => panic!("unexpected error {e}: {:?}", c.result()),
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("sending to a reset peer never failed");
    }

    fn kernel_errors_arrive_as_completions(backend: Backend) {
        let port = port(backend);
        let (h, _peer) = associated_pair(&port, Key(1));
        // Accepting on a connected stream is refused by the kernel, and the
        // refusal is delivered like any other result.
        port.accept(&h, 1u64).unwrap();
        let c = next_of(&port, OpKind::Accept, 1);
        assert_eq!(errno(&c), Some(Errno::INVAL.raw_os_error()), "{:?}", c.result());
        assert!(matches!(c.payload(), Payload::None));
    }

    fn closed_handle_is_rejected(backend: Backend) {
        let port = port(backend);
        let (h, _peer) = associated_pair(&port, Key(1));
        port.close(&h).unwrap();
        assert_eq!(port.stats().handles, 0);

        let e = port.recv(&h, marked_buf(), 1u64).unwrap_err();
        assert_eq!(e.kind, SubmitErrorKind::InvalidHandle);
        let v = vec_back(e);
        assert_marked(&v, v.capacity());

        let shared = Bytes::from_static(b"shared");
        let e = port.send(&h, shared.clone(), 2u64).unwrap_err();
        assert_eq!(e.kind, SubmitErrorKind::InvalidHandle);
        assert!(matches!(e.payload, Payload::Buf(Buf::Bytes(b)) if b == shared));

        let e = port.send_vectored(&h, vec![Buf::from("a"), Buf::from(b"bc".to_vec())], 3u64).unwrap_err();
        assert_eq!(e.kind, SubmitErrorKind::InvalidHandle);
        match e.payload {
            Payload::Bufs(b) => assert_eq!(b.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), [b"a".to_vec(), b"bc".to_vec()]),
            other => panic!("buffers not handed back: {other:?}"),
        }

        let tmp = TempFile::with_contents("closed", b"data");
        let file = Arc::new(tmp.open_read());
        let e = port.send_file(&h, file.clone(), 0, 4, 4u64).unwrap_err();
        assert_eq!(e.kind, SubmitErrorKind::InvalidHandle);
        assert!(matches!(e.payload, Payload::File(f) if Arc::ptr_eq(&f, &file)));

        // A datagram comes back with its address; the other builders too.
        let to: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let e = port.send_to(&h, b"dgram".to_vec(), to, 6u64).unwrap_err();
        assert_eq!(e.kind, SubmitErrorKind::InvalidHandle);
        assert!(matches!(e.payload, Payload::Datagram(d) if d.addr == to && d.buf.as_slice() == b"dgram"));
        let e = port.try_send(&h, b"now".to_vec(), 7u64).unwrap_err();
        assert!(matches!(e.payload, Payload::Buf(Buf::Vec(v)) if v == b"now"));
        for e in [
            port.read_at(&h, marked_buf(), 0, 8u64).unwrap_err(),
            port.recv_from(&h, marked_buf(), 9u64).unwrap_err(),
        ] {
            let v = vec_back(e);
            assert_marked(&v, v.capacity());
        }

        for r in [port.cancel(&h), port.close(&h)] {
            assert_eq!(r.unwrap_err().kind, SubmitErrorKind::InvalidHandle);
        }
        assert_eq!(port.shutdown_socket(&h, std::net::Shutdown::Both, 5u64).unwrap_err().kind, SubmitErrorKind::InvalidHandle);
        assert_nothing_more(&port);
        assert_eq!(port.stats().in_flight, 0);
    }

    fn close_cancels_in_flight_ops_and_hands_buffers_back(backend: Backend) {
        let port = port(backend);
        let (h, _peer) = associated_pair(&port, Key(1));
        port.recv(&h, marked_buf(), 1u64).unwrap();
        port.close(&h).unwrap();
        // Until the last operation on it has completed, the handle is closing.
        let e = port.recv(&h, marked_buf(), 2u64).unwrap_err();
        assert_eq!(e.kind, SubmitErrorKind::Closing);
        let v = vec_back(e);
        assert_marked(&v, v.capacity());
        assert_eq!(port.close(&h).unwrap_err().kind, SubmitErrorKind::Closing);

        let mut c = next_of(&port, OpKind::Recv, 1);
        assert_cancelled_with_buffer_back(&mut c);
        assert_nothing_more(&port);
        assert_eq!(port.recv(&h, Vec::with_capacity(8), 3u64).unwrap_err().kind, SubmitErrorKind::InvalidHandle);
        assert_eq!(port.stats().handles, 0);
    }

    fn cancel_of_a_handle_returns_the_pending_recv_buffer_intact(backend: Backend) {
        let port = port(backend);
        let (h, mut peer) = associated_pair(&port, Key(1));
        port.recv(&h, marked_buf(), 1u64).unwrap();
        port.cancel(&h).unwrap();
        let mut c = next_of(&port, OpKind::Recv, 1);
        assert_cancelled_with_buffer_back(&mut c);
        assert_nothing_more(&port);
        assert_eq!(port.stats().in_flight, 0);
        // Cancelling ends operations, not the handle.
        port.recv(&h, Vec::with_capacity(8), 2u64).unwrap();
        peer.write_all(b"still").unwrap();
        assert_eq!(next_of(&port, OpKind::Recv, 2).bytes(), 5);
    }

    fn cancel_op_ends_only_that_operation(backend: Backend) {
        let port = port(backend);
        let (h1, _p1) = associated_pair(&port, Key(1));
        let (h2, mut p2) = associated_pair(&port, Key(2));
        let a = port.recv(&h1, marked_buf(), 1u64).unwrap();
        port.recv(&h2, Vec::with_capacity(8), 2u64).unwrap();
        let t = port.timeout(Duration::from_secs(3600), 3u64).unwrap();
        port.cancel_op(a).unwrap();
        let mut c = next_of(&port, OpKind::Recv, 1);
        assert_cancelled_with_buffer_back(&mut c);
        port.cancel_op(t).unwrap();
        let c = next_of(&port, OpKind::Timeout, 3);
        assert!(c.is_cancelled(), "{:?}", c.result());
        assert_nothing_more(&port);
        // The other receive is still pending and works.
        p2.write_all(b"ok").unwrap();
        assert_eq!(next_of(&port, OpKind::Recv, 2).bytes(), 2);
    }

    fn cancel_op_of_a_finished_op_does_not_touch_a_later_one(backend: Backend) {
        let port = port(backend);
        let (h, mut peer) = associated_pair(&port, Key(1));
        let old = port.nop(1u64).unwrap();
        next_of(&port, OpKind::Nop, 1);
        // The later op may reuse the finished one's slot; its id differs.
        let new = port.recv(&h, Vec::with_capacity(8), 2u64).unwrap();
        assert_ne!(old, new);
        port.cancel_op(old).unwrap();
        assert_nothing_more(&port);
        peer.write_all(b"fine").unwrap();
        let c = next_of(&port, OpKind::Recv, 2);
        assert_eq!(c.bytes(), 4, "{:?}", c.result());
    }
}

backend_tests! {
    fn a_pool_from_another_port_is_refused(backend: Backend) {
        // Two rings number their buffer groups alike: the kernel would pick
        // from this port's pool and the buffer id would be read in the other's.
        let port_a = port(backend);
        let port_b = port(backend);
        let foreign = port_b.buf_pool(8, 256).unwrap();
        let (h, _peer) = associated_pair(&port_a, Key(1));
        let err = port_a.recv_pooled_multi(&h, &foreign, 1u64).unwrap_err();
        assert_eq!(err.kind, SubmitErrorKind::ForeignPort);
        let err = port_a.recv_pooled(&h, &foreign, 1u64).unwrap_err();
        assert_eq!(err.kind, SubmitErrorKind::ForeignPort);
        // Its own pool works.
        let own = port_a.buf_pool(8, 256).unwrap();
        port_a.recv_pooled(&h, &own, 2u64).unwrap();
        port_a.cancel(&h).unwrap();
        assert!(next_of(&port_a, OpKind::RecvPooled, 2).is_cancelled());
    }

    fn a_cancel_ends_only_the_operations_issued_before_it(backend: Backend) {
        let port = port(backend);
        let (h, mut peer) = associated_pair(&port, Key(1));
        port.recv(&h, Vec::with_capacity(16), 1u64).unwrap();
        port.cancel(&h).unwrap();
        assert!(next_of(&port, OpKind::Recv, 1).is_cancelled());
        // A receive issued after the cancel is untouched by it.
        port.recv(&h, Vec::with_capacity(16), 2u64).unwrap();
        std::io::Write::write_all(&mut peer, b"after").unwrap();
        let mut c = next_of(&port, OpKind::Recv, 2);
        assert_eq!(c.result().as_ref().ok(), Some(&5), "{:?}", c.result());
        assert_eq!(&c.take_buf().unwrap()[..], b"after");
    }
}
