//! Splitting a byte stream into lines, bounded.

/// Accumulates received bytes and yields complete lines (without `\n`).
#[derive(Default)]
pub struct LineBuf {
    buf: Vec<u8>,
}

impl LineBuf {
    /// Longest partial line kept; past it the partial line is dropped.
    pub const MAX: usize = 64 * 1024;

    /// Appends `data` and calls `f` for every complete line.
    pub fn feed(&mut self, data: &[u8], mut f: impl FnMut(&[u8])) {
        let mut start = 0;
        for (i, b) in data.iter().enumerate() {
            if *b == b'\n' {
                if self.buf.is_empty() {
                    f(&data[start..i]);
                } else {
                    self.buf.extend_from_slice(&data[start..i]);
                    f(&self.buf);
                    self.buf.clear();
                }
                start = i + 1;
            }
        }
        self.buf.extend_from_slice(&data[start..]);
        if self.buf.len() > Self::MAX {
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_feeds_come_out_whole() {
        let mut lb = LineBuf::default();
        let mut got = Vec::new();
        lb.feed(b"ab", |l| got.push(l.to_vec()));
        lb.feed(b"c\nde\nf", |l| got.push(l.to_vec()));
        lb.feed(b"\n", |l| got.push(l.to_vec()));
        assert_eq!(got, vec![b"abc".to_vec(), b"de".to_vec(), b"f".to_vec()]);
    }
}
