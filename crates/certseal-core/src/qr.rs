//! The QR form of a signed document: `CS1:` + Base45(zlib(COSE bytes)), like the EU DCC's
//! `HC1:`. Decoding bounds every step, so a short string cannot inflate into a large buffer.

use std::io::{Read, Write};

/// Prefix of a certseal QR string, version 1.
pub const QR_PREFIX: &str = "CS1:";
/// Longest QR string accepted (a version 40 QR code holds 4,296 alphanumeric characters).
pub const MAX_QR_CHARS: usize = 8 * 1024;
/// Largest document a QR string may inflate to.
pub const MAX_QR_DOCUMENT: usize = 64 * 1024;

/// The QR string of a signed document.
pub fn encode(document: &[u8]) -> String {
    // The default level: on a document of a few hundred bytes `best` saves almost nothing
    // and costs several times the CPU.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(document).expect("writing to a Vec");
    let compressed = z.finish().expect("finishing into a Vec");
    format!("{QR_PREFIX}{}", base45::encode(&compressed))
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
