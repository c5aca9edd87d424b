//! The QR form of a signed document: `CS1:` + Base45(zlib(COSE bytes)), like the EU DCC's
//! `HC1:`. Decoding bounds every step, so a short string cannot inflate into a large buffer.

use std::io::Read;

/// Prefix of a certseal QR string, version 1.
pub const QR_PREFIX: &str = "CS1:";
/// Longest QR string accepted when read (pasted or sent as text: more than prints). A longer
/// licence is checked by its document or its ID.
pub const MAX_QR_CHARS: usize = 8 * 1024;
/// Longest QR string that prints as a QR code: what a version 40 code holds at error
/// correction level M in alphanumeric mode (the Base45 alphabet and `CS1:` are alphanumeric).
/// A licence with a longer one is printed with the QR code of its public page address.
pub const MAX_PRINTABLE_QR_CHARS: usize = 3391;
/// Largest document a QR string may inflate to.
pub const MAX_QR_DOCUMENT: usize = 64 * 1024;

/// The QR string of a signed document.
pub fn encode(document: &[u8]) -> String {
    thread_local! {
        // A compressor's state is tens of kB; making one per document cost more than
        // compressing it.
        static COMPRESS: std::cell::RefCell<flate2::Compress> =
            std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::fast(), true));
    }
    let compressed = COMPRESS.with_borrow_mut(|z| {
        z.reset();
        // Incompressible input grows by a few bytes per 16 kB block plus the zlib frame.
        let mut out = Vec::with_capacity(document.len() + document.len() / 1000 + 64);
        loop {
            let before = z.total_in() as usize;
            let status = z
                .compress_vec(&document[before..], &mut out, flate2::FlushCompress::Finish)
                .expect("compressing into a Vec");
            if status == flate2::Status::StreamEnd {
                break out;
            }
            out.reserve(out.capacity().max(64));
        }
    });
    // Deflate can grow what it cannot compress (by about 6% here); stored blocks keep every
    // document within `max_chars`.
    let compressed = if compressed.len() > stored_len(document.len()) {
        stored(document)
    } else {
        compressed
    };
    let mut s = String::with_capacity(QR_PREFIX.len() + compressed.len() * 3 / 2 + 2);
    s.push_str(QR_PREFIX);
    s.push_str(&base45::encode(&compressed));
    s
}

/// Largest stored deflate block.
const STORED_BLOCK: usize = 65_535;

/// Length of the zlib stream of `len` bytes in stored blocks: the 2-byte header, 5 bytes
/// before each block, the Adler-32.
fn stored_len(len: usize) -> usize {
    2 + len + 5 * len.div_ceil(STORED_BLOCK).max(1) + 4
}

/// `data` as a zlib stream of stored (uncompressed) deflate blocks.
fn stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored_len(data.len()));
    out.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(STORED_BLOCK).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(block) = blocks.next() {
        let n = block.len() as u16;
        out.push(u8::from(blocks.peek().is_none()));
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// The longest QR string of a document of `len` bytes, whatever its bytes: [`encode`] falls
/// back to stored blocks when compressing would make the document larger.
pub fn max_chars(len: usize) -> usize {
    let z = stored_len(len);
    QR_PREFIX.len() + z / 2 * 3 + z % 2 * 2
}

/// The signed document in a QR string; every failure says which step.
pub fn decode(qr: &str) -> Result<Vec<u8>, String> {
    if qr.len() > MAX_QR_CHARS {
        return Err(format!(
            "{} characters, at most {MAX_QR_CHARS} are accepted",
            qr.len()
        ));
    }
    let body = qr
        .strip_prefix(QR_PREFIX)
        .ok_or_else(|| format!("a certseal QR string starts with '{QR_PREFIX}'"))?;
    let compressed = base45::decode(body).map_err(|e| format!("not Base45: {e:?}"))?;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(compressed.as_slice())
        .take(MAX_QR_DOCUMENT as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not zlib: {e}"))?;
    if out.len() > MAX_QR_DOCUMENT {
        return Err(format!("inflates beyond {MAX_QR_DOCUMENT} bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;

    #[test]
    fn large_and_repeated_documents_round_trip() {
        // Larger than one output reservation, and the per-thread compressor reused.
        let big: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for doc in [&big[..], b"", b"abc", &big[..600]] {
            assert_eq!(decode_unbounded(&encode(doc)), doc);
        }
    }

    #[test]
    fn no_document_exceeds_its_bound() {
        // Random bytes do not compress: the case the bound is for.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let random: Vec<u8> = (0..70_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        for len in (0..4000).chain([16_383, 16_384, 65_535, 65_536, 70_000]) {
            let doc = &random[..len];
            let qr = encode(doc);
            assert!(qr.len() <= max_chars(len), "{len} bytes: {}", qr.len());
            assert_eq!(decode_unbounded(&qr), doc);
        }
    }

    fn decode_unbounded(qr: &str) -> Vec<u8> {
        let compressed = base45::decode(&qr[4..]).unwrap();
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(compressed.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn qr_strings_round_trip_and_bad_ones_are_refused() {
        let doc: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
        let qr = encode(&doc);
        assert!(qr.starts_with("CS1:"));
        assert!(
            qr[4..]
                .chars()
                .all(|c| "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:".contains(c))
        );
        assert_eq!(decode(&qr).unwrap(), doc);
        assert!(decode(&qr.replacen("CS1:", "HC1:", 1)).is_err());
        assert!(decode("CS1:~~~").unwrap_err().contains("Base45"));
        assert!(decode(&format!("CS1:{}", base45::encode(b"not zlib"))).is_err());
        // A zlib bomb: 10 MB of zeros compress to ~10 kB; decoding stops at the bound.
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![0u8; 10 << 20]).unwrap();
        let bomb = format!("CS1:{}", base45::encode(z.finish().unwrap()));
        if bomb.len() <= MAX_QR_CHARS {
            assert!(decode(&bomb).unwrap_err().contains("inflates"));
        } else {
            assert!(decode(&bomb).unwrap_err().contains("characters"));
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![0u8; 200 << 10]).unwrap();
        let small_bomb = format!("CS1:{}", base45::encode(z.finish().unwrap()));
        assert!(decode(&small_bomb).unwrap_err().contains("inflates"));
    }
}
