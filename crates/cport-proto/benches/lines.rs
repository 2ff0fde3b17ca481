//! The line codec (`framing::Lines`), the chat server's hot path: every
//! received byte of a line-framed session is scanned for its newline.
//! Short chat lines (64 B) and long ones (1 KiB), decoded from one buffer
//! holding 1,000 of them, as the server sees a burst.
//!
//! `cargo bench -p cport-proto --bench lines`; compare two builds with
//! criterion's `--save-baseline NAME` / `--baseline NAME`.

// criterion_group! generates an undocumented public fn.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::BytesMut;
use cport_proto::framing::{Decoder, Lines};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// `count` lines of `len` bytes each (newline included), `\r\n` on every
/// other one, as chat clients send them.
fn burst(len: usize, count: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(len * count);
    for i in 0..count {
        let crlf = i % 2 == 0;
        let body = len - if crlf { 2 } else { 1 };
        out.extend((0..body).map(|k| b'a' + ((i + k) % 26) as u8));
        out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    }
    out
}

fn decode_lines(c: &mut Criterion) {
    let mut g = c.benchmark_group("lines_decode");
    for len in [64usize, 1024] {
        let input = burst(len, 1000);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(format!("{len}B"), |b| {
            b.iter_batched_ref(
                || input.clone(),
                |buf| {
                    let mut dec = Lines::new(4096);
                    let mut n = 0usize;
                    while let Some(line) = dec.decode(buf).expect("valid lines") {
                        n += line.len();
                    }
                    black_box(n)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, decode_lines);
criterion_main!(benches);
