//! gzip responses made of a compressed part kept between scrapes and a small
//! part compressed for each.
//!
//! A scrape's body is an exposition that rarely changes between scrapes
//! (kept, see [`crate::cache`]) followed by the one family that always does
//! (`scrape_duration_seconds`). The kept part is compressed once, as raw
//! deflate ended by a sync flush: byte-aligned and not final, so a second
//! deflate stream, compressed on its own, may follow it. Each response is then
//! one ordinary gzip member (RFC 1952): a header, the kept deflate, the
//! scrape's own deflate, and a trailer whose CRC-32 is combined from the two
//! parts' CRCs without reading the kept bytes again.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

/// The level: the fastest. A scrape's text is repetitive enough that it
/// compresses about as well (measured in docs/benchmarks.md), and a miss
/// compresses megabytes while Prometheus waits.
const LEVEL: u32 = 1;

/// The gzip header: deflate, no name or time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A compressed exposition, ready to be followed by more.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// The gzip header and the deflate of the text, ended by a sync flush.
    pub(crate) bytes: Bytes,
    crc: u32,
    len: u64,
}

/// Compresses a text given in pieces into a [`Head`], what is compressed so
/// far readable as it goes (to stream it).
pub(crate) struct HeadWriter {
    deflate: Compress,
    out: Vec<u8>,
    /// How much of `out` [`Self::unsent`] has handed out.
    sent: usize,
    crc: crc32fast::Hasher,
    len: u64,
}

impl HeadWriter {
    pub(crate) fn new() -> Self {
        HeadWriter {
            deflate: Compress::new(Compression::new(LEVEL), false),
            out: HEADER.to_vec(),
            sent: 0,
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    /// Compresses `text`, the next piece.
    pub(crate) fn write(&mut self, text: &[u8]) {
        self.crc.update(text);
        self.len += text.len() as u64;
        deflate(&mut self.deflate, text, FlushCompress::None, &mut self.out);
    }

    /// The compressed bytes not handed out yet.
    pub(crate) fn unsent(&mut self) -> Vec<u8> {
        let new = self.out[self.sent..].to_vec();
        self.sent = self.out.len();
        new
    }

    /// Flushes to a byte boundary: the whole head, and the part of it
    /// [`Self::unsent`] has not handed out.
    pub(crate) fn finish(mut self) -> (Head, Vec<u8>) {
        deflate(&mut self.deflate, &[], FlushCompress::Sync, &mut self.out);
        let rest = self.out[self.sent..].to_vec();
        // Kept between scrapes, and counted by its length: hold no more.
        self.out.shrink_to_fit();
        let head = Head {
            bytes: Bytes::from(self.out),
            crc: self.crc.finalize(),
            len: self.len,
        };
        (head, rest)
    }
}

/// Compresses a whole text into a [`Head`].
pub(crate) fn head(text: &[u8]) -> Head {
    let mut writer = HeadWriter::new();
    writer.write(text);
    writer.finish().0
}

/// What follows `head` for a response to end with `tail`: its deflate, then
/// the gzip trailer of the whole member.
pub(crate) fn tail(head: &Head, tail: &[u8]) -> Vec<u8> {
    tail_of(head.crc, head.len, tail)
}

/// The same, for a head of `len` bytes whose CRC-32 is `crc`.
fn tail_of(crc: u32, len: u64, tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tail.len() / 2 + 32);
    let mut deflate = Compress::new(Compression::new(LEVEL), false);
    deflate_all(&mut deflate, tail, &mut out);
    let mut whole = crc32fast::Hasher::new_with_initial_len(crc, len);
    let mut end = crc32fast::Hasher::new();
    end.update(tail);
    whole.combine(&end);
    out.extend_from_slice(&whole.finalize().to_le_bytes());
    // ISIZE is the length modulo 2^32.
    out.extend_from_slice(&((len + tail.len() as u64) as u32).to_le_bytes());
    out
}

/// Runs `deflate` over all of `input` with `flush`, appending to `out`.
fn deflate(deflate: &mut Compress, input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) {
    let mut input = input;
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(input.len() / 2 + 4096);
        }
        let before = deflate.total_in();
        // Errors are for misuse (a finished stream), not for data; should
        // one come, stop rather than try again.
        if deflate.compress_vec(input, out, flush).is_err() {
            return;
        }
        let consumed = (deflate.total_in() - before) as usize;
        input = &input[consumed..];
        // Done once all is in and the output did not fill: nothing is pending.
        if input.is_empty() && out.capacity() > out.len() {
            return;
        }
    }
}

/// Compresses `input` to the end of a final block.
fn deflate_all(deflate: &mut Compress, input: &[u8], out: &mut Vec<u8>) {
    let mut input = input;
    loop {
        out.reserve(input.len() / 2 + 64);
        let before = deflate.total_in();
        let status = deflate.compress_vec(input, out, FlushCompress::Finish);
        input = &input[(deflate.total_in() - before) as usize..];
        if matches!(status, Ok(Status::StreamEnd) | Err(_)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn gunzip(member: &[u8]) -> String {
        let mut text = String::new();
        // GzDecoder reads one member and checks its CRC and length.
        flate2::read::GzDecoder::new(member)
            .read_to_string(&mut text)
            .expect("a valid gzip member");
        text
    }

    #[test]
    fn one_head_serves_many_tails_each_a_valid_member() {
        let text: String = (0..20_000)
            .map(|i| format!("chainloop_workflow_up{{workflow=\"w{i}\"}} 1\n"))
            .collect();
        let head = head(text.as_bytes());
        for tail_text in ["a 0.0012\n", "a 0.5\n# EOF\n", ""] {
            let mut member = head.bytes.to_vec();
            member.extend(tail(&head, tail_text.as_bytes()));
            assert_eq!(gunzip(&member), format!("{text}{tail_text}"));
        }
        // Compressed: the text repeats itself.
        assert!(head.bytes.len() < text.len() / 5, "{}", head.bytes.len());
    }

    #[test]
    fn a_head_written_in_pieces_and_streamed_is_the_same_text() {
        let pieces: Vec<String> = (0..50)
            .map(|p| {
                (0..500)
                    .map(|i| format!("x{{p=\"{p}\",i=\"{i}\"}} {i}\n"))
                    .collect()
            })
            .collect();
        let mut writer = HeadWriter::new();
        let mut streamed = Vec::new();
        for piece in &pieces {
            writer.write(piece.as_bytes());
            streamed.extend(writer.unsent());
        }
        let (head, rest) = writer.finish();
        streamed.extend(rest);
        assert_eq!(streamed, head.bytes);
        streamed.extend(tail(&head, b"end 1\n"));
        assert_eq!(gunzip(&streamed), pieces.concat() + "end 1\n");
    }

    #[test]
    fn an_empty_head_and_a_wrong_crc_are_told_apart() {
        let head = head(b"");
        let mut member = head.bytes.to_vec();
        member.extend(tail(&head, b"only 1\n"));
        assert_eq!(gunzip(&member), "only 1\n");
        // The trailer is checked: a corrupted CRC is refused.
        let at = member.len() - 8;
        member[at] ^= 1;
        let mut text = String::new();
        assert!(
            flate2::read::GzDecoder::new(&member[..])
                .read_to_string(&mut text)
                .is_err()
        );
    }
}
