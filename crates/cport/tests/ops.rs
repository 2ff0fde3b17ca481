//! Each operation kind, on real loopback sockets and temp files: what it
//! delivers, and that its buffers come back in the completion.

use cport_testutil::port as util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cport::{Buf, BuildError, GetError, Issued, Key, OpKind, Payload, Port, SubmitErrorKind};
use rustix::io::Errno;
use util::*;

/// Reads exactly `len` bytes from `s` on a new thread (so a large send is
/// consumed while the port pushes it), returning them on join.
fn read_on_thread(mut s: TcpStream, len: usize) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut got = vec![0; len];
        s.read_exact(&mut got).expect("peer reads what was sent");
        got
    })
}

backend_tests! {
    fn builder_rejects_out_of_range_settings(backend: Backend) {
        for b in [
            Port::builder().concurrency(0),
            Port::builder().queue_limit(0),
            Port::builder().ring_entries(0),
        ] {
            match b.backend(backend).build() {
                Err(BuildError::Config(_)) => {}
                other => panic!("expected a config error, got {other:?}"),
            }
        }
    }

    fn post_delivers_key_bytes_and_ctx(backend: Backend) {
        let port = port(backend);
        port.post(Key(7), 42, 5u64).unwrap();
        let c = next_of(&port, OpKind::Post, 5);
        assert_eq!((c.key(), c.bytes(), c.more()), (Key(7), 42, false));
        assert!(matches!(c.payload(), Payload::None));
        assert_nothing_more(&port);
    }

    fn nop_completes_with_zero_and_its_op_id(backend: Backend) {
        let port = port(backend);
        let id = port.nop(3u64).unwrap();
        let c = next_of(&port, OpKind::Nop, 3);
        assert_eq!(c.op_id(), id);
        assert_eq!(*c.result().as_ref().unwrap(), 0);
    }

    fn get_times_out_when_nothing_is_ready(backend: Backend) {
        let port = port(backend);
        let start = Instant::now();
        assert!(matches!(port.get(Some(Duration::from_millis(30))), Err(GetError::Timeout)));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    fn get_many_takes_what_is_ready_up_to_max(backend: Backend) {
        let port = port(backend);
        for ctx in 0..5u64 {
            port.post(Key(1), 0, ctx).unwrap();
        }
        let mut out = Vec::new();
        assert_eq!(port.get_many(&mut out, 3, Some(LONG)).unwrap(), 3);
        assert_eq!(port.get_many(&mut out, 10, Some(LONG)).unwrap(), 2);
        let ctxs: Vec<u64> = out.iter().map(|c| c.ctx()).collect();
        assert_eq!(ctxs, [0, 1, 2, 3, 4]);
        assert_eq!(port.get_many(&mut out, 0, Some(LONG)).unwrap(), 0);
    }

    fn timeout_fires_no_earlier_than_asked(backend: Backend) {
        let port = port(backend);
        let start = Instant::now();
        port.timeout(Duration::from_millis(300), 1u64).unwrap();
        port.timeout(Duration::from_millis(40), 2u64).unwrap();
        let c = next_of(&port, OpKind::Timeout, 2);
        assert!(start.elapsed() >= Duration::from_millis(40), "fired after {:?}", start.elapsed());
        assert_eq!(*c.result().as_ref().unwrap(), 0);
        let c = next_of(&port, OpKind::Timeout, 1);
        assert!(start.elapsed() >= Duration::from_millis(300), "fired after {:?}", start.elapsed());
        assert_eq!(*c.result().as_ref().unwrap(), 0);
    }

    fn accept_takes_one_connection_per_call(backend: Backend) {
        let port = port(backend);
        let l = listener();
        let addr = l.local_addr().unwrap();
        let lh = port.associate(l, Key(1)).unwrap();
        for ctx in 0..2u64 {
            port.accept(&lh, ctx).unwrap();
            let client = TcpStream::connect(addr).unwrap();
            let mut c = next_of(&port, OpKind::Accept, ctx);
            assert!(!c.more(), "a single accept is not multishot");
            assert_eq!(c.key(), Key(1));
            let s = c.take_accepted().expect("accepted stream");
            assert_eq!(s.peer_addr().unwrap(), client.local_addr().unwrap());
        }
        assert_nothing_more(&port);
    }

    fn accept_multi_keeps_accepting_several_connections(backend: Backend) {
        let port = port(backend);
        let l = listener();
        let addr = l.local_addr().unwrap();
        let lh = port.associate(l, Key(1)).unwrap();
        port.accept_multi(&lh, 9u64).unwrap();
        let clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut peers = Vec::new();
        for _ in 0..clients.len() {
            let mut c = next_of(&port, OpKind::Accept, 9);
            assert!(c.more(), "multishot accept stays armed: {c:?}");
            peers.push(c.take_accepted().unwrap().peer_addr().unwrap());
        }
        let mut want: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        want.sort();
        peers.sort();
        assert_eq!(peers, want);
        // Closing the listener ends the accept with one final completion.
        port.close(&lh).unwrap();
        let c = next_of(&port, OpKind::Accept, 9);
        assert!(!c.more());
        assert!(c.is_cancelled(), "{:?}", c.result());
        assert_nothing_more(&port);
    }

    fn connect_reaches_a_listener(backend: Backend) {
        let port = port(backend);
        let l = listener();
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let h = port.associate(TcpStream::from(sock), Key(3)).unwrap();
        port.connect(&h, l.local_addr().unwrap(), 1u64).unwrap();
        let c = next_of(&port, OpKind::Connect, 1);
        assert_eq!(c.key(), Key(3));
        assert_eq!(*c.result().as_ref().unwrap(), 0);
        let (mut server, _) = l.accept().unwrap();
        server.set_read_timeout(Some(LONG)).unwrap();
        port.send(&h, "hi", 2u64).unwrap();
        assert_eq!(next_of(&port, OpKind::Send, 2).bytes(), 2);
        let mut got = [0; 2];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
    }

    fn recv_appends_into_spare_capacity(backend: Backend) {
        let port = port(backend);
        let (h, mut peer) = associated_pair(&port, Key(1));
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b"ab");
        port.recv(&h, buf, 1u64).unwrap();
        peer.write_all(b"hello").unwrap();
        let mut c = next_of(&port, OpKind::Recv, 1);
        assert_eq!(c.bytes(), 5);
        let buf = vec_of(&mut c);
        assert_eq!(buf, b"abhello");
        assert_eq!(buf.capacity(), 64, "the same allocation comes back");

        // A receive never writes past the spare capacity.
        let mut buf = Vec::with_capacity(4);
        buf.push(b'>');
        peer.write_all(b"0123456789").unwrap();
        port.recv(&h, buf, 2u64).unwrap();
        let mut c = next_of(&port, OpKind::Recv, 2);
        assert_eq!(c.bytes(), 3);
        assert_eq!(vec_of(&mut c), b">012");
    }

    fn recv_fills_the_whole_of_a_buffer_with_no_spare_capacity(backend: Backend) {
        let port = port(backend);
        let (h, mut peer) = associated_pair(&port, Key(1));
        // `vec![0; n]` offers its n bytes (not none, which would complete
        // Ok(0) and read as the end of the stream).
        port.recv(&h, vec![0; 16], 1u64).unwrap();
        peer.write_all(b"hello").unwrap();
        let mut c = next_of(&port, OpKind::Recv, 1);
        assert_eq!(*c.result().as_ref().unwrap(), 5);
        assert_eq!(vec_of(&mut c), b"hello", "the length becomes what arrived");

        // Exactly full: the bytes are overwritten, never appended.
        port.recv(&h, b"old!".to_vec(), 2u64).unwrap();
        peer.write_all(b"new!!!").unwrap();
        let mut c = next_of(&port, OpKind::Recv, 2);
        assert_eq!(vec_of(&mut c), b"new!");
        port.recv(&h, vec![0; 8], 3u64).unwrap();
        assert_eq!(vec_of(&mut next_of(&port, OpKind::Recv, 3)), b"!!");

        // A datagram into a zero-filled buffer.
        let ours = UdpSocket::bind("127.0.0.1:0").unwrap();
        let our_addr = ours.local_addr().unwrap();
        let hu = port.associate(ours, Key(2)).unwrap();
        port.recv_from(&hu, vec![0; 1500], 4u64).unwrap();
        UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"ping", our_addr).unwrap();
        match next_of(&port, OpKind::RecvFrom, 4).into_parts().1 {
            Payload::Datagram(d) => assert_eq!(&d.buf[..], b"ping"),
            other => panic!("expected a datagram, got {other:?}"),
        }
    }

    fn recv_refuses_a_buffer_with_no_capacity(backend: Backend) {
        let port = port(backend);
        let (h, _peer) = associated_pair(&port, Key(1));
        for e in [
            port.recv(&h, Vec::new(), 1u64).unwrap_err(),
            port.recv_from(&h, Vec::new(), 2u64).unwrap_err(),
            port.read_at(&h, Vec::new(), 0, 3u64).unwrap_err(),
        ] {
            assert_eq!(e.kind, SubmitErrorKind::NoRoom);
            assert!(matches!(e.payload, Payload::Buf(Buf::Vec(ref v)) if v.capacity() == 0));
        }
        assert_eq!(port.stats().in_flight, 0);
        assert_nothing_more(&port);
    }

    fn recv_reports_end_of_stream_as_zero(backend: Backend) {
        let port = port(backend);
        let (h, peer) = associated_pair(&port, Key(1));
        port.recv(&h, Vec::with_capacity(16), 1u64).unwrap();
        drop(peer);
        let mut c = next_of(&port, OpKind::Recv, 1);
        assert_eq!(*c.result().as_ref().unwrap(), 0);
        assert!(vec_of(&mut c).is_empty());
    }

    fn recv_pooled_fills_a_pool_buffer(backend: Backend) {
        let port = port(backend);
        let pool = port.buf_pool(4, 1024).unwrap();
        assert_eq!((pool.count(), pool.buf_size()), (4, 1024));
        let (h, mut peer) = associated_pair(&port, Key(1));
        port.recv_pooled(&h, &pool, 1u64).unwrap();
        peer.write_all(b"pooled data").unwrap();
        let mut c = next_of(&port, OpKind::RecvPooled, 1);
        assert!(!c.more());
        assert_eq!(c.bytes(), 11);
        let b = match c.take_buf() {
            Some(Buf::Pooled(b)) => b,
            other => panic!("expected a pooled buffer, got {other:?}"),
        };
        assert_eq!(&b[..], b"pooled data");
        // A pooled buffer can be sent on as it is (an echo without a copy).
        port.send(&h, b, 2u64).unwrap();
        assert_eq!(next_of(&port, OpKind::Send, 2).bytes(), 11);
        let mut got = [0; 11];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pooled data");
    }

    fn recv_pooled_multi_delivers_each_arrival(backend: Backend) {
        let port = port(backend);
        let pool = port.buf_pool(8, 256).unwrap();
        let (h, mut peer) = associated_pair(&port, Key(1));
        port.recv_pooled_multi(&h, &pool, 4u64).unwrap();
        let messages: [&[u8]; 4] = [b"one", b"two two", b"three three three", b"four"];
        for m in messages {
            // Wait for each arrival before the next, so they are not merged.
            peer.write_all(m).unwrap();
            let mut c = next_of(&port, OpKind::RecvPooled, 4);
            assert!(c.more(), "multishot receive stays armed: {c:?}");
            assert_eq!(&c.take_buf().unwrap()[..], m);
        }
        drop(peer);
        let c = next_of(&port, OpKind::RecvPooled, 4);
        assert_eq!((c.bytes(), c.more()), (0, false), "end of stream ends it: {c:?}");
        assert!(c.result().is_ok());
        assert_nothing_more(&port);
    }

    fn recv_pooled_multi_spreads_a_large_arrival_over_buffers_in_order(backend: Backend) {
        let port = port(backend);
        let pool = port.buf_pool(8, 64).unwrap();
        let (h, mut peer) = associated_pair(&port, Key(1));
        port.recv_pooled_multi(&h, &pool, 4u64).unwrap();
        // Armed and waiting before the data comes, then arrivals of exactly
        // one buffer, of a buffer and a bit, and of several buffers.
        std::thread::sleep(Duration::from_millis(20));
        let mut got = Vec::new();
        for (i, len) in [64usize, 100, 300].into_iter().enumerate() {
            let data = pattern(len, i as u64);
            peer.write_all(&data).unwrap();
            let mut round = Vec::new();
            while round.len() < len {
                let mut c = next_of(&port, OpKind::RecvPooled, 4);
                assert!(c.more(), "multishot receive stays armed: {c:?}");
                let b = c.take_buf().unwrap();
                assert!(!b.is_empty() && b.len() <= 64, "one buffer at most per completion");
                assert_eq!(b.len(), c.bytes());
                round.extend_from_slice(&b);
            }
            assert_eq!(round, data, "bytes arrive whole and in order");
            got.push(round.len());
        }
        assert_eq!(got, [64, 100, 300]);
        assert_nothing_more(&port);
        // Every buffer went back to the pool: a full pool's worth of data
        // still fits.
        let data = pattern(8 * 64, 9);
        peer.write_all(&data).unwrap();
        let mut round = Vec::new();
        while round.len() < data.len() {
            let mut c = next_of(&port, OpKind::RecvPooled, 4);
            round.extend_from_slice(&c.take_buf().unwrap());
        }
        assert_eq!(round, data);
    }

    fn pool_exhaustion_ends_receive_with_enobufs_and_rearm_works(backend: Backend) {
        let port = port(backend);
        let pool = port.buf_pool(2, 16).unwrap();
        let (h, mut peer) = associated_pair(&port, Key(1));
        port.recv_pooled_multi(&h, &pool, 1u64).unwrap();
        let mut held = Vec::new();
        for i in 0..2u8 {
            peer.write_all(&[i; 16]).unwrap();
            let mut c = next_of(&port, OpKind::RecvPooled, 1);
            assert!(c.more());
            let b = c.take_buf().unwrap();
            assert_eq!(&b[..], &[i; 16]);
            held.push(b); // keep the pool empty
        }
        peer.write_all(&[2; 16]).unwrap();
        let c = next_of(&port, OpKind::RecvPooled, 1);
        assert!(!c.more(), "an empty pool ends the multishot receive: {c:?}");
        assert_eq!(errno(&c), Some(Errno::NOBUFS.raw_os_error()), "{:?}", c.result());

        // A single-shot pooled receive with the pool still empty fails the same way.
        port.recv_pooled(&h, &pool, 2u64).unwrap();
        let c = next_of(&port, OpKind::RecvPooled, 2);
        assert_eq!(errno(&c), Some(Errno::NOBUFS.raw_os_error()), "{:?}", c.result());

        // Buffers go back to the pool on drop; re-arming then gets the data,
        // which waited in the socket.
        drop(held);
        port.recv_pooled_multi(&h, &pool, 3u64).unwrap();
        let mut c = next_of(&port, OpKind::RecvPooled, 3);
        assert!(c.more());
        assert_eq!(&c.take_buf().unwrap()[..], &[2; 16]);
        port.close(&h).unwrap();
        let c = next_of(&port, OpKind::RecvPooled, 3);
        assert!(!c.more() && c.is_cancelled(), "{c:?}");
    }

    fn send_transmits_the_buffer_and_hands_it_back(backend: Backend) {
        let port = port(backend);
        let (h, mut peer) = associated_pair(&port, Key(1));
        port.send(&h, b"hello world".to_vec(), 1u64).unwrap();
        let mut c = next_of(&port, OpKind::Send, 1);
        assert_eq!(c.bytes(), 11);
        assert_eq!(vec_of(&mut c), b"hello world");
        let shared = Bytes::from_static(b"shared");
        port.send(&h, shared.clone(), 2u64).unwrap();
        let mut c = next_of(&port, OpKind::Send, 2);
        assert_eq!(c.bytes(), 6);
        assert!(matches!(c.take_buf(), Some(Buf::Bytes(b)) if b == shared));
        let mut got = [0; 17];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello worldshared");
    }

    fn try_send_hands_back_a_send_that_finished_and_queues_nothing(backend: Backend) {
        let port = port(backend);
        let (h, mut peer) = associated_pair(&port, Key(1));
        let c = match port.try_send(&h, b"inline".to_vec(), 1u64).unwrap() {
            // epoll tries a send with nothing ahead of it at once.
            Issued::Done(c) => {
                assert_eq!(backend, cport::Backend::Epoll, "io_uring batches sends");
                c
            }
            Issued::Pending(id) => {
                assert_eq!(backend, cport::Backend::IoUring, "epoll finishes a send the socket takes");
                let c = next_of(&port, OpKind::Send, 1);
                assert_eq!(c.op_id(), id);
                c
            }
        };
        assert_eq!((c.kind(), c.key(), c.ctx(), c.bytes()), (OpKind::Send, Key(1), 1, 6));
        let mut c = c;
        assert_eq!(vec_of(&mut c), b"inline");
        let gathered = vec![Buf::from("a-"), Buf::from(b"b".to_vec())];
        let c = match port.try_send_vectored(&h, gathered, 2u64).unwrap() {
            Issued::Done(c) => c,
            Issued::Pending(_) => next_of(&port, OpKind::SendVectored, 2),
        };
        assert_eq!(c.bytes(), 3);
        let mut got = [0; 9];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"inlinea-b");
        // Each completed exactly once: nothing more to dequeue, nothing in flight.
        assert_nothing_more(&port);
        let st = port.stats();
        assert_eq!(st.in_flight, 0);
        assert_eq!((st.completed_of(OpKind::Send), st.completed_of(OpKind::SendVectored)), (1, 1));
    }

    fn try_send_behind_a_full_socket_waits_and_completes_in_order(backend: Backend) {
        let port = port(backend);
        let (h, peer) = associated_pair(&port, Key(1));
        // Sends of 1 MiB until one must wait (the peer reads nothing yet),
        // then one more, queued behind it.
        let chunk = pattern(1 << 20, 3);
        let mut sent = 0;
        let mut pending = Vec::new();
        let mut done_bytes = 0;
        for i in 0..64u64 {
            match port.try_send(&h, chunk.clone(), i).unwrap() {
                Issued::Done(c) => done_bytes += c.bytes(),
                Issued::Pending(id) => pending.push((i, id)),
            }
            sent += 1;
            if pending.len() == 2 {
                break;
            }
        }
        assert_eq!(pending.len(), 2, "a socket that is not read fills up");
        // Each pending send completes once, in order, and every byte the
        // completions report reaches the peer (a send, as send(2), may take
        // part of its buffer).
        let reader = std::thread::spawn(move || {
            let mut peer = peer;
            let mut got = Vec::new();
            peer.read_to_end(&mut got).map(|_| got.len())
        });
        let mut order = Vec::new();
        let mut pending_bytes = 0;
        while order.len() < 2 {
            let c = next(&port);
            assert_eq!(c.kind(), OpKind::Send);
            assert!(c.bytes() > 0);
            pending_bytes += c.bytes();
            order.push((c.ctx(), c.op_id()));
        }
        assert_eq!(order, pending);
        port.close(&h).unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), done_bytes + pending_bytes);
        assert_nothing_more(&port);
        assert_eq!(port.stats().completed_of(OpKind::Send), sent as u64);
    }

    fn try_send_on_a_closed_handle_fails_and_gives_the_buffer_back(backend: Backend) {
        let port = port(backend);
        let (h, _peer) = associated_pair(&port, Key(1));
        port.close(&h).unwrap();
        let e = port.try_send(&h, b"late".to_vec(), 1u64).unwrap_err();
        assert!(matches!(&e.payload, Payload::Buf(b) if &b[..] == b"late"), "{e:?}");
        assert_nothing_more(&port);
    }

    fn send_vectored_gathers_buffers_in_order(backend: Backend) {
        let port = port(backend);
        let (h, mut peer) = associated_pair(&port, Key(1));
        let big = pattern(100_000, 1);
        let bufs = vec![
            Buf::from(b"head:".to_vec()),
            Buf::from(Bytes::from_static(b"middle:")),
            Buf::from(big.clone()),
            Buf::from(":tail"),
        ];
        let mut want = b"head:middle:".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b":tail");
        let reader = read_on_thread(peer.try_clone().unwrap(), want.len());
        port.send_vectored(&h, bufs, 1u64).unwrap();
        let c = next_of(&port, OpKind::SendVectored, 1);
        assert_eq!(c.bytes(), want.len());
        match c.into_parts().1 {
            Payload::Bufs(back) => {
                let lens: Vec<usize> = back.iter().map(|b| b.len()).collect();
                assert_eq!(lens, [5, 7, 100_000, 5], "buffers come back in order");
            }
            other => panic!("expected the buffers back, got {other:?}"),
        }
        assert!(reader.join().unwrap() == want, "peer got the buffers in order");
        peer.set_nonblocking(true).unwrap();
        assert_eq!(peer.read(&mut [0; 1]).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    }

    fn udp_recv_from_and_send_to_carry_addresses(backend: Backend) {
        let port = port(backend);
        let ours = UdpSocket::bind("127.0.0.1:0").unwrap();
        let our_addr = ours.local_addr().unwrap();
        let h = port.associate(ours, Key(5)).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(LONG)).unwrap();
        let peer_addr = peer.local_addr().unwrap();

        port.recv_from(&h, Vec::with_capacity(1500), 1u64).unwrap();
        peer.send_to(b"ping", our_addr).unwrap();
        let c = next_of(&port, OpKind::RecvFrom, 1);
        assert_eq!((c.key(), c.bytes()), (Key(5), 4));
        match c.into_parts().1 {
            Payload::Datagram(d) => {
                assert_eq!(&d.buf[..], b"ping");
                assert_eq!(d.addr, peer_addr);
            }
            other => panic!("expected a datagram, got {other:?}"),
        }

        port.send_to(&h, "pong", peer_addr, 2u64).unwrap();
        let c = next_of(&port, OpKind::SendTo, 2);
        assert_eq!(c.bytes(), 4);
        assert!(matches!(c.payload(), Payload::Datagram(d) if &d.buf[..] == b"pong" && d.addr == peer_addr));
        let mut got = [0; 16];
        let (n, from) = peer.recv_from(&mut got).unwrap();
        assert_eq!((&got[..n], from), (&b"pong"[..], our_addr));
    }

    fn shutdown_socket_gives_the_peer_end_of_stream(backend: Backend) {
        let port = port(backend);
        let (h, mut peer) = associated_pair(&port, Key(1));
        port.send(&h, "last words", 1u64).unwrap();
        next_of(&port, OpKind::Send, 1);
        port.shutdown_socket(&h, Shutdown::Write, 2u64).unwrap();
        let c = next_of(&port, OpKind::Shutdown, 2);
        assert_eq!(*c.result().as_ref().unwrap(), 0);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"last words");
        // The other direction still works.
        port.recv(&h, Vec::with_capacity(8), 3u64).unwrap();
        peer.write_all(b"reply").unwrap();
        assert_eq!(next_of(&port, OpKind::Recv, 3).bytes(), 5);
    }

    fn file_write_at_read_at_and_fsync(backend: Backend) {
        let port = port(backend);
        let tmp = TempFile::new("rw");
        let h = port.associate(tmp.open_rw(), Key(8)).unwrap();
        port.write_at(&h, b"hello".to_vec(), 0, 1u64).unwrap();
        assert_eq!(next_of(&port, OpKind::WriteAt, 1).bytes(), 5);
        port.write_at(&h, "world", 100, 2u64).unwrap();
        assert_eq!(next_of(&port, OpKind::WriteAt, 2).bytes(), 5);
        port.fsync(&h, false, 3u64).unwrap();
        assert!(next_of(&port, OpKind::Fsync, 3).result().is_ok());
        port.fsync(&h, true, 4u64).unwrap();
        assert!(next_of(&port, OpKind::Fsync, 4).result().is_ok());
        assert_eq!(std::fs::metadata(tmp.path()).unwrap().len(), 105);

        let mut buf = Vec::with_capacity(8);
        buf.push(b'[');
        port.read_at(&h, buf, 0, 5u64).unwrap();
        let mut c = next_of(&port, OpKind::ReadAt, 5);
        assert_eq!(c.bytes(), 7);
        assert_eq!(vec_of(&mut c), b"[hello\0\0");
        port.read_at(&h, Vec::with_capacity(64), 98, 6u64).unwrap();
        let mut c = next_of(&port, OpKind::ReadAt, 6);
        assert_eq!(vec_of(&mut c), b"\0\0world", "a short read at the end of the file");
        // A zero-filled buffer is read into whole.
        port.read_at(&h, vec![0; 3], 1, 9u64).unwrap();
        assert_eq!(vec_of(&mut next_of(&port, OpKind::ReadAt, 9)), b"ell");
        // At and past the end: Ok(0), buffer untouched.
        for (ctx, off) in [(7u64, 105), (8, 1 << 20)] {
            port.read_at(&h, b"x".to_vec(), off, ctx).unwrap();
            let mut c = next_of(&port, OpKind::ReadAt, ctx);
            assert_eq!(*c.result().as_ref().unwrap(), 0);
            assert_eq!(vec_of(&mut c), b"x");
        }
    }

    fn send_file_sends_a_large_file_unchanged(backend: Backend) {
        let port = port(backend);
        let data = pattern(8 << 20, 7);
        let tmp = TempFile::with_contents("send-file", &data);
        let (h, peer) = associated_pair(&port, Key(1));
        let reader = read_on_thread(peer, data.len());
        let file = Arc::new(tmp.open_read());
        port.send_file(&h, file.clone(), 0, data.len() as u64, 1u64).unwrap();
        let c = next_of(&port, OpKind::SendFile, 1);
        assert_eq!(c.bytes(), data.len(), "{:?}", c.result());
        assert!(matches!(c.payload(), Payload::File(f) if Arc::ptr_eq(f, &file)), "the file comes back");
        assert!(reader.join().unwrap() == data, "the peer got the file's bytes");
    }

    fn send_file_honours_offset_and_len_and_stops_at_end_of_file(backend: Backend) {
        let port = port(backend);
        let data = pattern(300_000, 8);
        let tmp = TempFile::with_contents("send-file-range", &data);
        let (h, peer) = associated_pair(&port, Key(1));
        let file = Arc::new(tmp.open_read());

        let reader = read_on_thread(peer.try_clone().unwrap(), 100_000);
        port.send_file(&h, file.clone(), 12_345, 100_000, 1u64).unwrap();
        assert_eq!(next_of(&port, OpKind::SendFile, 1).bytes(), 100_000);
        assert!(reader.join().unwrap() == data[12_345..112_345], "offset and len honoured");

        // Asking for more than the file holds: a short count, then nothing more.
        let reader = read_on_thread(peer.try_clone().unwrap(), 1_000);
        port.send_file(&h, file, data.len() as u64 - 1_000, 50_000, 2u64).unwrap();
        let c = next_of(&port, OpKind::SendFile, 2);
        assert_eq!(c.bytes(), 1_000, "{:?}", c.result());
        assert!(reader.join().unwrap() == data[data.len() - 1_000..]);
        port.shutdown_socket(&h, Shutdown::Write, 3u64).unwrap();
        next_of(&port, OpKind::Shutdown, 3);
        let mut rest = Vec::new();
        let mut peer = peer;
        peer.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{} bytes past the end of the file", rest.len());
    }
}
