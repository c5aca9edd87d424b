//! Identifiers of the registry and their check characters (DESIGN.md, "Identifiers").
//!
//! Each identifier is a newtype that can only be built by parsing, so a value of the type
//! is always well formed and its check character is right.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused. The text is shown to callers, so it names the rule broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(pub String);

fn err(msg: impl Into<String>) -> IdError {
    IdError(msg.into())
}

/// Alphabet of unified social credit codes (GB 32100): digits and capitals without I, O, S, V, Z.
const CREDIT_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const CREDIT_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn credit_value(c: u8) -> Option<u32> {
    CREDIT_ALPHABET
        .iter()
        .position(|&a| a == c)
        .map(|p| p as u32)
}

/// An 18-character unified social credit code (统一社会信用代码), identifying a department
/// or an organisation holder.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CreditCode(String);

impl CreditCode {
    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The check character for the first 17 characters (which must be in the alphabet).
    fn check_char(body: &[u8]) -> Option<u8> {
        let mut sum = 0u32;
        for (i, &c) in body.iter().enumerate() {
            sum += credit_value(c)? * CREDIT_WEIGHTS[i];
        }
        Some(CREDIT_ALPHABET[((31 - sum % 31) % 31) as usize])
    }
}

impl FromStr for CreditCode {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        if b.len() != 18 {
            return Err(err(format!(
                "a credit code has 18 characters, this one has {}",
                s.chars().count()
            )));
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !c.is_ascii() || !CREDIT_ALPHABET.contains(&(*c as u8)))
        {
            return Err(err(format!(
                "'{bad}' is not in the credit code alphabet 0-9A-Z without I, O, S, V, Z"
            )));
        }
        let expected = Self::check_char(&b[..17]).expect("alphabet checked");
        if b[17] != expected {
            return Err(err(format!(
                "check character is '{}', expected '{}' (GB 32100)",
                b[17] as char, expected as char
            )));
        }
        Ok(Self(s.to_owned()))
    }
}

/// An 18-character resident identity number (GB 11643) of a person holder.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResidentId(String);

impl ResidentId {
    /// The number as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ResidentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        if b.len() != 18 || !s.is_ascii() {
            return Err(err(format!(
                "a resident ID has 18 characters, this one has {}",
                s.chars().count()
            )));
        }
        if !b[..17].iter().all(u8::is_ascii_digit) {
            return Err(err("the first 17 characters of a resident ID are digits"));
        }
        let month = (b[10] - b'0') * 10 + (b[11] - b'0');
        let day = (b[12] - b'0') * 10 + (b[13] - b'0');
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return Err(err("the birth date in the resident ID is not a date"));
        }
        // Weights are 2^(17-i) mod 11 for i = 0..17.
        let mut sum = 0u32;
        let mut weight = 1u32;
        for &c in b[..17].iter().rev() {
            weight = weight * 2 % 11;
            sum += u32::from(c - b'0') * weight;
        }
        let check = (12 - sum % 11) % 11;
        let expected = if check == 10 {
            b'X'
        } else {
            b'0' + check as u8
        };
        if b[17] != expected {
            return Err(err(format!(
                "check character is '{}', expected '{}' (GB 11643)",
                b[17] as char, expected as char
            )));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A 6-digit administrative region code (GB/T 2260), such as `350500`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegionCode(String);

impl RegionCode {
    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RegionCode {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        if b.len() != 6 || !b.iter().all(u8::is_ascii_digit) {
            return Err(err("a region code is 6 digits"));
        }
        // Province codes run from 11 (Beijing) to 82 (Macao); 10 and below do not exist.
        let province = (b[0] - b'0') * 10 + (b[1] - b'0');
        if !(11..=82).contains(&province) {
            return Err(err(format!(
                "'{}' is not a province prefix (11 to 82)",
                &s[..2]
            )));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A 21-character licence type code: the defining department's credit code and 3 digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TypeCode(String);

impl TypeCode {
    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The department that defines this licence type.
    pub fn defining_department(&self) -> CreditCode {
        CreditCode(self.0[..18].to_owned())
    }
}

impl FromStr for TypeCode {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.len() != 21 || !s.is_ascii() {
            return Err(err(format!(
                "a licence type code has 21 characters (credit code + 3 digits), this one has {}",
                s.chars().count()
            )));
        }
        s[..18]
            .parse::<CreditCode>()
            .map_err(|e| err(format!("its first 18 characters: {e}")))?;
        if !s.as_bytes()[18..].iter().all(u8::is_ascii_digit) {
            return Err(err("its last 3 characters are digits"));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A licence ID in the GB/T 36904 shape:
/// `1.2.156.3005.2.<type code>.<issuer>.<serial>.<version>.<check>`, where the issuer is a
/// department's credit code (version 1 of the format) or, in IDs collected from platforms that
/// put one there, a 6-digit administrative region code (addition 1.1, `docs/formats.md`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LicenceId(String);

/// The fixed prefix of every licence ID.
pub const LICENCE_ID_PREFIX: &str = "1.2.156.3005.2.";

/// What a licence ID names in its issuer position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdIssuer {
    /// The issuing department's credit code (18 characters): the document's `iss` is this code.
    Department(CreditCode),
    /// An administrative region code (6 digits, GB/T 2260), as some provincial platforms
    /// write it: the ID does not name the department; the document's `iss` is the collecting
    /// department's credit code.
    Region(RegionCode),
}

impl IdIssuer {
    /// The text in the ID.
    pub fn as_str(&self) -> &str {
        match self {
            IdIssuer::Department(c) => c.as_str(),
            IdIssuer::Region(r) => r.as_str(),
        }
    }

    /// Reads the issuer position: 18 characters are a credit code, 6 a region code.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        match s.len() {
            6 => s.parse().map(IdIssuer::Region),
            _ if s.len() == 18 || !s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().map(IdIssuer::Department)
            }
            n => Err(err(format!(
                "an issuer is a credit code (18 characters) or a region code (6 digits), this one has {n} digits"
            ))),
        }
    }
}

impl fmt::Display for IdIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LicenceId {
    /// Builds the ID of a licence, computing its check character.
    pub fn new(
        type_code: &TypeCode,
        issuer: &CreditCode,
        serial: &str,
        version: u16,
    ) -> Result<Self, IdError> {
        Self::with_issuer(
            type_code,
            &IdIssuer::Department(issuer.clone()),
            serial,
            version,
        )
    }

    /// Builds the ID of a licence whose issuer position is `issuer`, computing its check
    /// character.
    pub fn with_issuer(
        type_code: &TypeCode,
        issuer: &IdIssuer,
        serial: &str,
        version: u16,
    ) -> Result<Self, IdError> {
        check_serial(serial)?;
        if version > 999 {
            return Err(err("a licence ID version has 3 digits"));
        }
        let version = format!("{version:03}");
        let check = mod37_36_check(
            [type_code.as_str(), issuer.as_str(), serial, &version]
                .concat()
                .as_bytes(),
        )
        .expect("fields are in the alphabet");
        Ok(Self(format!(
            "{LICENCE_ID_PREFIX}{}.{}.{serial}.{version}.{}",
            type_code.as_str(),
            issuer.as_str(),
            check as char
        )))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn part(&self, n: usize) -> &str {
        self.0[LICENCE_ID_PREFIX.len()..]
            .split('.')
            .nth(n)
            .expect("a parsed licence ID has five parts")
    }

    /// The licence type code.
    pub fn type_code(&self) -> TypeCode {
        TypeCode(self.part(0).to_owned())
    }

    /// What the issuer position names: a department, or a region.
    pub fn issuer(&self) -> IdIssuer {
        let s = self.part(1);
        if s.len() == 6 {
            IdIssuer::Region(RegionCode(s.to_owned()))
        } else {
            IdIssuer::Department(CreditCode(s.to_owned()))
        }
    }

    /// The serial, unique per issuer.
    pub fn serial(&self) -> &str {
        self.part(2)
    }

    /// The version: 1 for a new licence, one more for each amendment or renewal.
    pub fn version(&self) -> u16 {
        self.part(3).parse().expect("3 digits")
    }

    /// Whether a document whose `iss` is `iss` may carry this ID: a credit-code ID only with
    /// that code; a region-code ID with any department's (the registry's record, or the
    /// collecting authority's seal, says which).
    pub fn admits_iss(&self, iss: &CreditCode) -> bool {
        match self.issuer() {
            IdIssuer::Department(c) => &c == iss,
            IdIssuer::Region(_) => true,
        }
    }
}

/// Longest serial a licence ID may have.
pub const MAX_SERIAL_CHARS: usize = 32;

fn check_serial(serial: &str) -> Result<(), IdError> {
    if serial.is_empty() || serial.len() > MAX_SERIAL_CHARS {
        return Err(err("a licence serial has 1 to 32 characters"));
    }
    if !serial
        .bytes()
        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    {
        return Err(err("a licence serial uses only 0-9 and A-Z"));
    }
    Ok(())
}

/// ISO/IEC 7064 MOD 37,36 check character over `0-9A-Z` text.
fn mod37_36_check(text: &[u8]) -> Option<u8> {
    const M: u32 = 36;
    let mut p = M;
    for &c in text {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' => c - b'A' + 10,
            _ => return None,
        };
        let mut s = (p % (M + 1)) + u32::from(v);
        s %= M;
        if s == 0 {
            s = M;
        }
        p = s * 2;
    }
    let check = (M + 1 - p % (M + 1)) % M;
    Some(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[check as usize])
}

impl FromStr for LicenceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let rest = s
            .strip_prefix(LICENCE_ID_PREFIX)
            .ok_or_else(|| err(format!("a licence ID starts with '{LICENCE_ID_PREFIX}'")))?;
        let parts: Vec<&str> = rest.split('.').collect();
        let [type_code, issuer, serial, version, check] = parts[..] else {
            return Err(err(
                "a licence ID has the fields type code, issuer, serial, version and check after its prefix",
            ));
        };
        let type_code: TypeCode = type_code
            .parse()
            .map_err(|e| err(format!("type code: {e}")))?;
        let issuer = IdIssuer::parse(issuer).map_err(|e| err(format!("issuer: {e}")))?;
        if version.len() != 3 || !version.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err("a licence ID version has 3 digits"));
        }
        let id = Self::with_issuer(
            &type_code,
            &issuer,
            serial,
            version.parse().expect("3 digits"),
        )?;
        if !id.0.ends_with(check) || check.len() != 1 {
            return Err(err(format!(
                "check character is '{check}', expected '{}' (ISO/IEC 7064 MOD 37,36)",
                &id.0[id.0.len() - 1..]
            )));
        }
        Ok(id)
    }
}

macro_rules! text_id {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), self.0)
            }
        }
        impl TryFrom<String> for $t {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0
            }
        }
    )*};
}
text_id!(CreditCode, ResidentId, RegionCode, TypeCode, LicenceId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_code_names_its_department() {
        let t: TypeCode = "11100000000013338W032".parse().unwrap();
        assert_eq!(t.defining_department().as_str(), "11100000000013338W");
        assert!("11100000000013338W03".parse::<TypeCode>().is_err());
        assert!("11100000000013338X032".parse::<TypeCode>().is_err());
        assert!("11100000000013338W03A".parse::<TypeCode>().is_err());
    }

    #[test]
    fn region_codes() {
        assert!("350500".parse::<RegionCode>().is_ok());
        assert!("35050".parse::<RegionCode>().is_err());
        assert!("05A500".parse::<RegionCode>().is_err());
        assert!("990000".parse::<RegionCode>().is_err());
    }

    // Computed with an independent ISO/IEC 7064 MOD 37,36 implementation (Python, checked
    // first against the published vectors of tests/data/identifiers.json).
    const REGION_IDS: [&str; 2] = [
        "1.2.156.3005.2.11100000000013338W032.350500.2430599.001.C",
        "1.2.156.3005.2.11100000000013338W011.440300.20230000403.002.0",
    ];

    #[test]
    fn region_code_issuers_are_read_and_rebuilt() {
        for s in REGION_IDS {
            let id: LicenceId = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            let IdIssuer::Region(region) = id.issuer() else {
                panic!("{s}: the issuer is a region code");
            };
            let again = LicenceId::with_issuer(
                &id.type_code(),
                &IdIssuer::Region(region),
                id.serial(),
                id.version(),
            )
            .unwrap();
            assert_eq!(again.as_str(), s);
        }
        let id: LicenceId = REGION_IDS[0].parse().unwrap();
        assert_eq!(id.issuer().as_str(), "350500");
        assert_eq!(id.version(), 1);
        // Any department may be `iss` of a region-code ID; the registry says which one is.
        assert!(id.admits_iss(&"11220000013544541J".parse().unwrap()));
    }

    #[test]
    fn credit_code_issuers_bind_iss() {
        let id: LicenceId = "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F"
            .parse()
            .unwrap();
        assert!(matches!(id.issuer(), IdIssuer::Department(_)));
        assert!(id.admits_iss(&"11220000013544541J".parse().unwrap()));
        assert!(!id.admits_iss(&"11100000000013338W".parse().unwrap()));
    }

    #[test]
    fn bad_region_code_ids_say_why() {
        let refused = |s: &str, why: &str| {
            let e = s.parse::<LicenceId>().expect_err(s).0;
            assert!(e.contains(why), "{s}: {e}");
        };
        // One character changed: the check character catches it.
        refused(
            "1.2.156.3005.2.11100000000013338W032.350500.2430599.001.D",
            "check character is 'D', expected 'C'",
        );
        refused(
            "1.2.156.3005.2.11100000000013338W032.350501.2430599.001.C",
            "check character",
        );
        // Not a region: no province 99; letters; 5 or 7 digits.
        refused(
            "1.2.156.3005.2.11100000000013338W032.990500.2430599.001.C",
            "province",
        );
        refused(
            "1.2.156.3005.2.11100000000013338W032.3505A0.2430599.001.C",
            "6 digits",
        );
        refused(
            "1.2.156.3005.2.11100000000013338W032.35050.2430599.001.C",
            "region code (6 digits)",
        );
        refused(
            "1.2.156.3005.2.11100000000013338W032.3505000.2430599.001.C",
            "region code (6 digits)",
        );
        // A credit code with a wrong check character is still refused as one.
        refused(
            "1.2.156.3005.2.11100000000013338W032.11220000013544541K.2430599.001.F",
            "GB 32100",
        );
    }
}
