use cport::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

#[test]
fn smoke() {
    let port = Port::builder().backend(Backend::IoUring).build().unwrap();
    port.post(Key(1), 5, 9).unwrap();
    let c = port.get(Some(Duration::from_secs(1))).unwrap();
    assert_eq!((c.key(), c.ctx(), c.bytes(), c.kind()), (Key(1), 9, 5, OpKind::Post));
    port.nop(3).unwrap();
    let c = port.get(Some(Duration::from_secs(1))).unwrap();
    assert_eq!((c.ctx(), c.kind()), (3, OpKind::Nop));
    port.timeout(Duration::from_millis(20), 4).unwrap();
    let c = port.get(Some(Duration::from_secs(1))).unwrap();
    assert_eq!((c.ctx(), c.kind(), c.bytes()), (4, OpKind::Timeout, 0));
    assert!(matches!(port.get(Some(Duration::from_millis(20))), Err(GetError::Timeout)));

    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let lh = port.associate(l, Key(100)).unwrap();
    port.accept_multi(&lh, 1).unwrap();
    let mut cl = TcpStream::connect(addr).unwrap();
    let mut c = port.get(Some(Duration::from_secs(1))).unwrap();
    assert!(c.more());
    let s = c.take_accepted().unwrap();
    let sh = port.associate(s, Key(200)).unwrap();
    let pool = port.buf_pool(64, 4096).unwrap();
    port.recv_pooled_multi(&sh, &pool, 2).unwrap();
    cl.write_all(b"hello").unwrap();
    let mut c = port.get(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(c.kind(), OpKind::RecvPooled);
    assert!(c.more());
    let b = c.take_buf().unwrap();
    assert_eq!(&b[..], b"hello");
    port.send(&sh, b, 3).unwrap();
    let c = port.get(Some(Duration::from_secs(1))).unwrap();
    assert_eq!((c.kind(), c.bytes()), (OpKind::Send, 5));
    let mut got = [0u8; 5];
    cl.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    drop(cl);
    let c = port.get(Some(Duration::from_secs(1))).unwrap();
    assert_eq!((c.kind(), c.bytes(), c.more()), (OpKind::RecvPooled, 0, false));
    port.close(&sh).unwrap();
    port.close(&lh).unwrap();
    let c = port.get(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(c.kind(), OpKind::Accept);
    assert!(c.is_cancelled(), "{:?}", c.result());
    assert!(port.send(&sh, Vec::new(), 0).is_err());
    eprintln!("{:?}", port.stats());
}
