//! GB/T 38540 electronic-seal data: the seal (SESeal, version 4, and the older GM/T 0031
//! version 1 layout) and the signature a seal makes on a document (SES_Signature, version 4).
//!
//! Read with a small DER walker: the structures are plain SEQUENCEs of universal types, and
//! the two seal versions differ in a field and a nesting, which typed decoding would make
//! two copies of everything for.

use crate::CryptoError;

/// SM2-with-SM3 (GM/T 0006), the signature algorithm of every SM2 seal and signature.
pub const SM2_WITH_SM3_OID: &str = "1.2.156.10197.1.501";

fn bad(what: impl Into<String>) -> CryptoError {
    CryptoError::Format(format!("GB/T 38540: {}", what.into()))
}

/// One DER element: its tag byte, its whole encoding and its contents.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    der: &'a [u8],
    value: &'a [u8],
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const IA5_STRING: u8 = 0x16;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// Reads one element from the front of `input`; returns it and what follows.
fn tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), CryptoError> {
    let (&tag, rest) = input.split_first().ok_or_else(|| bad("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(bad("a multi-byte tag"));
    }
    let (&first, rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad("a bad length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(bad("truncated"));
    }
    let header = input.len() - rest.len();
    Ok((
        Tlv {
            tag,
            der: &input[..header + len],
            value: &rest[..len],
        },
        &rest[len..],
    ))
}

/// The DER of a SEQUENCE with `content`.
fn der_sequence(content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![SEQUENCE];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The elements of a constructed element.
fn children<'a>(t: &Tlv<'a>, what: &str) -> Result<Vec<Tlv<'a>>, CryptoError> {
    if t.tag != SEQUENCE {
        return Err(bad(format!("{what} is not a SEQUENCE")));
    }
    let mut out = Vec::new();
    let mut rest = t.value;
    while !rest.is_empty() {
        let (c, r) = tlv(rest)?;
        out.push(c);
        rest = r;
    }
    Ok(out)
}

fn expect<'a>(t: Option<&Tlv<'a>>, tag: u8, what: &str) -> Result<Tlv<'a>, CryptoError> {
    match t {
        Some(t) if t.tag == tag => Ok(*t),
        Some(t) => Err(bad(format!("{what}: tag 0x{:02x}, not 0x{tag:02x}", t.tag))),
        None => Err(bad(format!("{what} is missing"))),
    }
}

fn text(t: Option<&Tlv<'_>>, tag: u8, what: &str) -> Result<String, CryptoError> {
    let t = expect(t, tag, what)?;
    String::from_utf8(t.value.to_vec()).map_err(|_| bad(format!("{what} is not text")))
}

fn integer(t: Option<&Tlv<'_>>, what: &str) -> Result<i64, CryptoError> {
    let t = expect(t, INTEGER, what)?;
    if t.value.is_empty() || t.value.len() > 8 {
        return Err(bad(format!(
            "{what}: an integer of {} bytes",
            t.value.len()
        )));
    }
    let neg = t.value[0] & 0x80 != 0;
    Ok(t.value.iter().fold(if neg { -1i64 } else { 0 }, |acc, b| {
        (acc << 8) | i64::from(*b)
    }))
}

fn time(t: Option<&Tlv<'_>>, what: &str) -> Result<String, CryptoError> {
    match t {
        Some(t) if t.tag == UTC_TIME || t.tag == GENERALIZED_TIME => {
            String::from_utf8(t.value.to_vec()).map_err(|_| bad(format!("{what} is not a time")))
        }
        _ => Err(bad(format!("{what} is not a time"))),
    }
}

fn oid(t: Option<&Tlv<'_>>, what: &str) -> Result<String, CryptoError> {
    let t = expect(t, OID, what)?;
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc = 0u64;
    for (i, b) in t.value.iter().enumerate() {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        } else if i + 1 == t.value.len() {
            return Err(bad(format!("{what}: a truncated OID")));
        }
    }
    Ok(arcs
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

fn bits(t: Option<&Tlv<'_>>, what: &str) -> Result<Vec<u8>, CryptoError> {
    let t = expect(t, BIT_STRING, what)?;
    match t.value.split_first() {
        Some((0, bytes)) => Ok(bytes.to_vec()),
        _ => Err(bad(format!("{what} is not a whole number of bytes"))),
    }
}

/// The seal's picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealPicture {
    /// Its format: "PNG", "JPG", "GIF", "BMP", "SVG" or "OFD".
    pub kind: String,
    /// The image.
    pub data: Vec<u8>,
    /// Width and height in millimetres.
    pub width_mm: i64,
    /// See `width_mm`.
    pub height_mm: i64,
}

/// An electronic seal (SESeal), of either version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeSeal {
    /// 4 (GB/T 38540) or 1 (GM/T 0031).
    pub version: i64,
    /// The seal maker's vendor ID.
    pub vid: String,
    /// The seal's ID (esID).
    pub es_id: String,
    /// The seal's type (GB/T 38540: 1 an organisation's seal, 2 a person's).
    pub seal_type: i64,
    /// The seal's name.
    pub name: String,
    /// The certificates of the seal's holder (DER).
    pub cert_list: Vec<Vec<u8>>,
    /// When the seal was made, and its validity, as written (UTCTime or GeneralizedTime).
    pub created: String,
    /// See `created`.
    pub valid_start: String,
    /// See `created`.
    pub valid_end: String,
    /// The seal's picture.
    pub picture: SealPicture,
    /// The seal maker's certificate (DER).
    pub maker_cert: Vec<u8>,
    /// The maker's signature algorithm (an OID).
    pub signature_algorithm: String,
    /// The maker's signature (DER r, s).
    pub signature: Vec<u8>,
    /// What the maker signed (see [`SeSeal::from_der`]).
    pub signed_data: Vec<u8>,
}

impl SeSeal {
    /// Reads a seal from its DER. `signed_data` is what the maker signed, as the
    /// implementations in use sign it: for version 4 the DER of SES_SealInfo, for version 1
    /// the DER of SEQUENCE { SES_SealInfo, cert, signatureAlgorithm }.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let (top, rest) = tlv(der)?;
        if !rest.is_empty() {
            return Err(bad("bytes after the seal"));
        }
        let parts = children(&top, "SESeal")?;
        let info = expect(parts.first(), SEQUENCE, "SES_SealInfo")?;
        let fields = children(&info, "SES_SealInfo")?;
        let header = children(
            &expect(fields.first(), SEQUENCE, "SES_Header")?,
            "SES_Header",
        )?;
        let id = text(header.first(), IA5_STRING, "SES_Header.ID")?;
        if id != "ES" {
            return Err(bad(format!("SES_Header.ID is {id:?}, not \"ES\"")));
        }
        let version = integer(header.get(1), "SES_Header.version")?;
        let vid = text(header.get(2), IA5_STRING, "SES_Header.Vid")?;
        let es_id = text(fields.get(1), IA5_STRING, "esID")?;
        let property = children(
            &expect(fields.get(2), SEQUENCE, "SES_ESPropertyInfo")?,
            "SES_ESPropertyInfo",
        )?;
        // Version 4 adds certListType (1: certificates) before certList.
        let list_at = if version >= 4 {
            let list_type = integer(property.get(2), "certListType")?;
            if list_type != 1 {
                return Err(bad(format!(
                    "certListType {list_type}: only certificates (1) are read"
                )));
            }
            3
        } else {
            2
        };
        let cert_list = children(
            &expect(property.get(list_at), SEQUENCE, "certList")?,
            "certList",
        )?
        .iter()
        .map(|c| {
            expect(Some(c), OCTET_STRING, "a certificate of certList").map(|c| c.value.to_vec())
        })
        .collect::<Result<_, _>>()?;
        let picture = children(
            &expect(fields.get(3), SEQUENCE, "SES_ESPictrueInfo")?,
            "SES_ESPictrueInfo",
        )?;
        let picture = SealPicture {
            kind: text(picture.first(), IA5_STRING, "picture type")?,
            data: expect(picture.get(1), OCTET_STRING, "picture data")?
                .value
                .to_vec(),
            width_mm: integer(picture.get(2), "picture width")?,
            height_mm: integer(picture.get(3), "picture height")?,
        };
        // Version 4: cert, signAlgID, signedValue follow the information; version 1 nests
        // them in SES_SignInfo.
        // What the maker signed, as the implementations in use sign it (checked on ofdrw's
        // seals): version 4, the DER of SES_SealInfo; version 1, the DER of
        // SEQUENCE { SES_SealInfo, cert, signatureAlgorithm }.
        let (sign, signed_data) = if version >= 4 {
            (parts[1..].to_vec(), info.der.to_vec())
        } else {
            let info_sign = expect(parts.get(1), SEQUENCE, "SES_SignInfo")?;
            let sign = children(&info_sign, "SES_SignInfo")?;
            let content: Vec<u8> = std::iter::once(&info)
                .chain(sign.iter().take(2))
                .flat_map(|p| p.der.iter().copied())
                .collect();
            (sign, der_sequence(&content))
        };
        Ok(Self {
            version,
            vid,
            es_id,
            seal_type: integer(property.first(), "seal type")?,
            name: text(property.get(1), UTF8_STRING, "seal name")?,
            cert_list,
            created: time(property.get(list_at + 1), "createDate")?,
            valid_start: time(property.get(list_at + 2), "validStart")?,
            valid_end: time(property.get(list_at + 3), "validEnd")?,
            picture,
            maker_cert: expect(sign.first(), OCTET_STRING, "the maker's certificate")?
                .value
                .to_vec(),
            signature_algorithm: oid(sign.get(1), "signAlgID")?,
            signature: bits(sign.get(2), "signedValue")?,
            signed_data,
        })
    }
}

/// A seal's signature on a document (SES_Signature, version 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SesSignature {
    /// The seal that signed.
    pub seal: SeSeal,
    /// When, as written (GeneralizedTime).
    pub time: String,
    /// The digest of the signed data (SM3 of `Signature.xml` in an OFD file).
    pub data_hash: Vec<u8>,
    /// What the signature covers, e.g. the path of `Signature.xml`.
    pub property_info: String,
    /// The signer's certificate (DER).
    pub cert: Vec<u8>,
    /// The signature algorithm (an OID).
    pub signature_algorithm: String,
    /// The signature (DER r, s) over `tbs`.
    pub signature: Vec<u8>,
    /// The DER of TBS_Sign, which the signature covers.
    pub tbs: Vec<u8>,
}

impl SesSignature {
    /// Reads a signature from its DER (an OFD file's `SignedValue.dat`).
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let (top, rest) = tlv(der)?;
        if !rest.is_empty() {
            return Err(bad("bytes after the signature"));
        }
        let parts = children(&top, "SES_Signature")?;
        let tbs = expect(parts.first(), SEQUENCE, "TBS_Sign")?;
        let fields = children(&tbs, "TBS_Sign")?;
        let version = integer(fields.first(), "TBS_Sign.version")?;
        if version != 4 {
            return Err(bad(format!("TBS_Sign version {version}: only 4 is read")));
        }
        let seal = expect(fields.get(1), SEQUENCE, "eseal")?;
        Ok(Self {
            seal: SeSeal::from_der(seal.der)?,
            time: time(fields.get(2), "timeInfo")?,
            data_hash: bits(fields.get(3), "dataHash")?,
            property_info: text(fields.get(4), IA5_STRING, "propertyInfo")?,
            cert: expect(parts.get(1), OCTET_STRING, "cert")?.value.to_vec(),
            signature_algorithm: oid(parts.get(2), "signatureAlgID")?,
            signature: bits(parts.get(3), "signature")?,
            tbs: tbs.der.to_vec(),
        })
    }
}

/// DER of one element.
fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = der_sequence(content);
    out[0] = tag;
    out
}

fn encode_integer(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    // The shortest two's-complement form.
    let mut start = 0;
    while start < 7
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    encode(INTEGER, &bytes[start..])
}

fn encode_bits(bytes: &[u8]) -> Vec<u8> {
    encode(BIT_STRING, &[&[0u8][..], bytes].concat())
}

fn encode_oid(dotted: &str) -> Result<Vec<u8>, CryptoError> {
    let arcs: Vec<u64> = dotted
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad(format!("OID {dotted:?}")))?;
    let [a, b, rest @ ..] = arcs.as_slice() else {
        return Err(bad(format!("OID {dotted:?}")));
    };
    let mut out = Vec::new();
    for arc in std::iter::once(a * 40 + b).chain(rest.iter().copied()) {
        let mut chunk = vec![(arc & 0x7f) as u8];
        let mut v = arc >> 7;
        while v > 0 {
            chunk.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        out.extend(chunk.iter().rev());
    }
    Ok(encode(OID, &out))
}

fn generalized_time(unix_s: i64) -> Result<Vec<u8>, CryptoError> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_s)
        .map_err(|_| bad(format!("time {unix_s}")))?;
    let s = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    Ok(encode(GENERALIZED_TIME, s.as_bytes()))
}

/// Unix seconds of a time as a seal or signature writes it: GeneralizedTime
/// (`YYYYMMDDHHMMSS[.f]Z`) or UTCTime (`YYMMDDHHMMSSZ`, years 1950 to 2049).
pub fn unix_time(written: &str) -> Result<i64, CryptoError> {
    let t = written
        .strip_suffix('Z')
        .ok_or_else(|| bad(format!("time {written:?} is not in UTC")))?;
    let t = t.split('.').next().unwrap_or(t);
    let (year, rest) = match t.len() {
        14 => (t[..4].parse::<i32>().ok(), &t[4..]),
        12 => (
            t[..2]
                .parse::<i32>()
                .ok()
                .map(|y| if y < 50 { 2000 + y } else { 1900 + y }),
            &t[2..],
        ),
        _ => (None, t),
    };
    let n = |i: usize| rest.get(i..i + 2).and_then(|d| d.parse::<u8>().ok());
    let parsed = (|| {
        let date = time::Date::from_calendar_date(year?, time::Month::try_from(n(0)?).ok()?, n(2)?)
            .ok()?;
        let clock = time::Time::from_hms(n(4)?, n(6)?, n(8)?).ok()?;
        Some(date.with_time(clock).assume_utc().unix_timestamp())
    })();
    parsed.ok_or_else(|| bad(format!("time {written:?}")))
}

fn ia5(s: &str, what: &str) -> Result<Vec<u8>, CryptoError> {
    if !s.is_ascii() {
        return Err(bad(format!("{what} must be ASCII (IA5String)")));
    }
    Ok(encode(IA5_STRING, s.as_bytes()))
}

/// What a version 4 seal says (see [`SeSeal`]); times are Unix seconds.
#[derive(Debug, Clone)]
pub struct NewSeal<'a> {
    /// The seal maker's vendor ID.
    pub vid: &'a str,
    /// The seal's ID (esID), ASCII.
    pub es_id: &'a str,
    /// The seal's type (GB/T 38540: 1 an organisation's seal, 2 a person's).
    pub seal_type: i64,
    /// The seal's name.
    pub name: &'a str,
    /// The certificates of the seal's holder (DER).
    pub cert_list: &'a [Vec<u8>],
    /// When it was made.
    pub created: i64,
    /// Its validity.
    pub valid_start: i64,
    /// See `valid_start`.
    pub valid_end: i64,
    /// Its picture.
    pub picture: &'a SealPicture,
}

/// Makes a version 4 seal (SESeal), signed by the seal maker `maker` (SM2) whose certificate
/// is `maker_cert`, over the DER of SES_SealInfo as [`SeSeal::from_der`] checks it.
pub fn make_seal(
    seal: &NewSeal<'_>,
    maker: &crate::sm::Sm2Key,
    maker_cert: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let header = encode(
        SEQUENCE,
        &[ia5("ES", "ID")?, encode_integer(4), ia5(seal.vid, "Vid")?].concat(),
    );
    let certs: Vec<u8> = seal
        .cert_list
        .iter()
        .flat_map(|c| encode(OCTET_STRING, c))
        .collect();
    let property = encode(
        SEQUENCE,
        &[
            encode_integer(seal.seal_type),
            encode(UTF8_STRING, seal.name.as_bytes()),
            encode_integer(1),
            encode(SEQUENCE, &certs),
            generalized_time(seal.created)?,
            generalized_time(seal.valid_start)?,
            generalized_time(seal.valid_end)?,
        ]
        .concat(),
    );
    let picture = encode(
        SEQUENCE,
        &[
            ia5(&seal.picture.kind, "picture type")?,
            encode(OCTET_STRING, &seal.picture.data),
            encode_integer(seal.picture.width_mm),
            encode_integer(seal.picture.height_mm),
        ]
        .concat(),
    );
    let info = encode(
        SEQUENCE,
        &[header, ia5(seal.es_id, "esID")?, property, picture].concat(),
    );
    let signature = maker.sign_der(&info);
    Ok(encode(
        SEQUENCE,
        &[
            info,
            encode(OCTET_STRING, maker_cert),
            encode_oid(SM2_WITH_SM3_OID)?,
            encode_bits(&signature),
        ]
        .concat(),
    ))
}

/// Signs a document with a seal: a version 4 SES_Signature whose TBS_Sign carries the seal
/// `seal_der`, the time, `data_hash` (in an OFD file, SM3 of `Signature.xml`) and
/// `property_info`, signed with SM2 over the DER of TBS_Sign by `signer`, whose certificate
/// `signer_cert` it carries.
pub fn sign(
    seal_der: &[u8],
    at: i64,
    data_hash: &[u8],
    property_info: &str,
    signer: &crate::sm::Sm2Key,
    signer_cert: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    SeSeal::from_der(seal_der)?;
    let tbs = encode(
        SEQUENCE,
        &[
            encode_integer(4),
            seal_der.to_vec(),
            generalized_time(at)?,
            encode_bits(data_hash),
            ia5(property_info, "propertyInfo")?,
        ]
        .concat(),
    );
    let signature = signer.sign_der(&tbs);
    Ok(encode(
        SEQUENCE,
        &[
            tbs,
            encode(OCTET_STRING, signer_cert),
            encode_oid(SM2_WITH_SM3_OID)?,
            encode_bits(&signature),
        ]
        .concat(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_oids_encode_as_der() {
        assert_eq!(encode_integer(4), [2, 1, 4]);
        assert_eq!(encode_integer(128), [2, 2, 0, 128]);
        assert_eq!(encode_integer(-1), [2, 1, 0xff]);
        assert_eq!(encode_integer(40), [2, 1, 40]);
        let oid = encode_oid(SM2_WITH_SM3_OID).unwrap();
        assert_eq!(oid, [6, 8, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 1, 0x83, 0x75]);
        let (t, _) = tlv(&oid).unwrap();
        assert_eq!(super::oid(Some(&t), "x").unwrap(), SM2_WITH_SM3_OID);
        assert_eq!(der_sequence(&[0; 200])[..3], [0x30, 0x81, 200]);
    }
}
