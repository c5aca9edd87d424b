//! Use codes (授权用证): a holder's permission for one department, or anyone, to check one
//! licence for named purposes, seeing named fields, a number of times within a validity.
//!
//! The code is 80 random bits in Crockford's Base32 (no I, L, O or U: it survives being read
//! aloud or typed from a screen), then two check characters, written in three groups of six:
//! `7K3M9Q-XD2PAF-HT84W4`. The registry keeps only the code's SHA-256. Its QR string is
//! `CSU:1:<18 characters>:<licence ID>`, every character in the QR alphanumeric set.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::department::Timestamp;
use crate::ids::{CreditCode, LicenceId};
use crate::licence::HolderKind;
use crate::uuid_id::SealId;

/// Prefix of a use code's QR string.
pub const USE_CODE_QR_PREFIX: &str = "CSU:";
/// Version of the QR string's layout.
pub const USE_CODE_QR_VERSION: &str = "1";
/// Characters of a code, without its hyphens.
pub const USE_CODE_CHARS: usize = 18;
/// Random characters in a code (5 bits each).
const RANDOM_CHARS: usize = 16;
/// Crockford's Base32 alphabet.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// The check is a weighted sum modulo this prime (< 32²): every single wrong character and
/// every swap of two neighbours changes it.
const CHECK_MODULUS: u32 = 1021;

/// Shortest validity of a code, in seconds.
pub const MIN_USE_CODE_VALIDITY_SECS: u64 = 5 * 60;
/// Longest validity of a code, in seconds.
pub const MAX_USE_CODE_VALIDITY_SECS: u64 = 30 * 24 * 3600;
/// Most uses of one code.
pub const MAX_USE_CODE_USES: u32 = 100;
/// Most purposes or fields one code names.
pub const MAX_USE_CODE_ITEMS: usize = 32;

/// A use code in its canonical form: 18 upper-case characters, check included.
#[derive(Clone, PartialEq, Eq)]
pub struct UseCodeText(String);

impl std::fmt::Debug for UseCodeText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A code is a bearer secret: it stays out of logs.
        f.write_str("UseCodeText(…)")
    }
}

fn check_value(values: &[u8]) -> u32 {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u32 + 1) * u32::from(*v))
        .sum::<u32>()
        % CHECK_MODULUS
}

impl UseCodeText {
    /// The code of 10 random bytes.
    pub fn from_random(random: &[u8; 10]) -> Self {
        let mut bits: u128 = 0;
        for b in random {
            bits = (bits << 8) | u128::from(*b);
        }
        let values: Vec<u8> = (0..RANDOM_CHARS)
            .rev()
            .map(|i| ((bits >> (5 * i)) & 31) as u8)
            .collect();
        let check = check_value(&values);
        let mut s: String = values
            .iter()
            .map(|v| char::from(ALPHABET[*v as usize]))
            .collect();
        s.push(char::from(ALPHABET[(check / 32) as usize]));
        s.push(char::from(ALPHABET[(check % 32) as usize]));
        Self(s)
    }

    /// Reads a code as people write it: any case, hyphens and spaces anywhere, O for 0 and I or
    /// L for 1; refuses a wrong length or check.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut values = Vec::with_capacity(USE_CODE_CHARS);
        for c in text.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            let Some(v) = ALPHABET.iter().position(|a| char::from(*a) == c) else {
                return Err(format!(
                    "a use code has only the characters 0-9 and A-Z without U; '{c}' is not one"
                ));
            };
            values.push(v as u8);
            if values.len() > USE_CODE_CHARS {
                break;
            }
        }
        if values.len() != USE_CODE_CHARS {
            return Err(format!(
                "a use code has {USE_CODE_CHARS} characters (hyphens aside)"
            ));
        }
        let check = u32::from(values[16]) * 32 + u32::from(values[17]);
        if check != check_value(&values[..RANDOM_CHARS]) {
            return Err("the use code's check characters do not match: it was mistyped".into());
        }
        Ok(Self(
            values
                .iter()
                .map(|v| char::from(ALPHABET[*v as usize]))
                .collect(),
        ))
    }

    /// The 18 characters (what is hashed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// As shown to people: three groups of six.
    pub fn grouped(&self) -> String {
        format!("{}-{}-{}", &self.0[..6], &self.0[6..12], &self.0[12..])
    }

    /// The QR string of this code for `licence`.
    pub fn qr_string(&self, licence: &LicenceId) -> String {
        format!(
            "{USE_CODE_QR_PREFIX}{USE_CODE_QR_VERSION}:{}:{}",
            self.0,
            licence.as_str()
        )
    }
}

/// A presented code: the code alone, or its QR string (which also names the licence).
pub fn parse_presented(text: &str) -> Result<(UseCodeText, Option<LicenceId>), String> {
    let text = text.trim();
    let Some(rest) = text.strip_prefix(USE_CODE_QR_PREFIX) else {
        return UseCodeText::parse(text).map(|c| (c, None));
    };
    let mut parts = rest.splitn(3, ':');
    let (Some(version), Some(code), Some(licence)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("a use code's QR string is CSU:1:<code>:<licence ID>".into());
    };
    if version != USE_CODE_QR_VERSION {
        return Err(format!(
            "use code QR version {version} is not known; this registry reads version {USE_CODE_QR_VERSION}"
        ));
    }
    let licence: LicenceId = licence
        .parse()
        .map_err(|e: crate::ids::IdError| format!("the QR string's licence ID: {}", e.0))?;
    Ok((UseCodeText::parse(code)?, Some(licence)))
}

/// Who may present a code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// One department (with the verifier or issuer role).
    Department(CreditCode),
    /// Any department with the verifier role, and the public page.
    Anyone,
}

/// A use code as the registry keeps it (never the code itself: its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UseCode {
    /// Format version, 1.
    pub v: u32,
    /// The code's ID (UUIDv7): what the holder revokes it by.
    pub id: SealId,
    /// SHA-256 of the code's 18 characters.
    #[serde(with = "crate::bytes")]
    pub hash: Vec<u8>,
    /// The licence it opens.
    pub licence: LicenceId,
    /// The holder's kind.
    pub holder_kind: HolderKind,
    /// The holder's ID.
    pub holder_id: String,
    /// The holder agent that created it.
    pub agent: CreditCode,
    /// Purposes a check with it may state.
    pub purposes: BTreeSet<String>,
    /// Personal fields it shows beyond the public ones.
    pub fields: BTreeSet<String>,
    /// Who may present it.
    pub audience: Audience,
    /// When it was created.
    pub created_at: Timestamp,
    /// The end of its validity.
    pub not_after: Timestamp,
    /// How many checks it allows.
    pub uses: u32,
    /// How many it has served.
    pub used: u32,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
}

/// Why a code does not open a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseCodeRefusal {
    /// No code has this hash.
    Unknown,
    /// The holder revoked it.
    Revoked,
    /// Its validity has ended.
    Expired,
    /// Every use it allows was made.
    UsedUp,
    /// It opens another licence.
    OtherLicence,
    /// It is for another department (or a department, and the public page presented it).
    OtherAudience,
    /// The check states a purpose the code does not name.
    OtherPurpose,
}

impl UseCodeRefusal {
    /// The reason code sent in the status details (`google.rpc.ErrorInfo.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            UseCodeRefusal::Unknown => "USE_CODE_UNKNOWN",
            UseCodeRefusal::Revoked => "USE_CODE_REVOKED",
            UseCodeRefusal::Expired => "USE_CODE_EXPIRED",
            UseCodeRefusal::UsedUp => "USE_CODE_USED_UP",
            UseCodeRefusal::OtherLicence => "USE_CODE_OTHER_LICENCE",
            UseCodeRefusal::OtherAudience => "USE_CODE_OTHER_AUDIENCE",
            UseCodeRefusal::OtherPurpose => "USE_CODE_OTHER_PURPOSE",
        }
    }

    /// Words for people.
    pub fn words(self) -> &'static str {
        match self {
            UseCodeRefusal::Unknown => "no use code matches",
            UseCodeRefusal::Revoked => "the use code was revoked by its holder",
            UseCodeRefusal::Expired => "the use code has expired",
            UseCodeRefusal::UsedUp => "the use code has been used as many times as it allows",
            UseCodeRefusal::OtherLicence => "the use code is for another licence",
            UseCodeRefusal::OtherAudience => "the use code is for another department",
            UseCodeRefusal::OtherPurpose => "the use code does not allow this purpose",
        }
    }
}

/// Who presents a code.
#[derive(Debug, Clone, Copy)]
pub enum Presenter<'a> {
    /// A department.
    Department(&'a CreditCode),
    /// The public page.
    PublicPage,
}

impl UseCode {
    /// Why the code does not open a check of `licence` by `presenter` for `purpose` at `now`;
    /// `None` when it does. A presenter the code is not for learns only that: nothing of what
    /// the holder or the intended department did with it. Then the holder's own acts
    /// (revoked, expired, used up) come first.
    pub fn refusal(
        &self,
        licence: &LicenceId,
        presenter: Presenter<'_>,
        purpose: &str,
        now: Timestamp,
    ) -> Option<UseCodeRefusal> {
        let audience_ok = match (&self.audience, presenter) {
            (Audience::Anyone, _) => true,
            (Audience::Department(d), Presenter::Department(p)) => d == p,
            (Audience::Department(_), Presenter::PublicPage) => false,
        };
        if !audience_ok {
            return Some(UseCodeRefusal::OtherAudience);
        }
        if self.revoked_at.is_some() {
            return Some(UseCodeRefusal::Revoked);
        }
        if now > self.not_after {
            return Some(UseCodeRefusal::Expired);
        }
        if self.used >= self.uses {
            return Some(UseCodeRefusal::UsedUp);
        }
        if &self.licence != licence {
            return Some(UseCodeRefusal::OtherLicence);
        }
        if !self.purposes.contains(purpose) {
            return Some(UseCodeRefusal::OtherPurpose);
        }
        None
    }

    /// Whether it may still serve a check (not revoked, expired or used up).
    pub fn live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && now <= self.not_after && self.used < self.uses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_back_however_they_are_written() {
        // The example the docs give.
        assert!(UseCodeText::parse("7K3M9Q-XD2PAF-HT84W4").is_ok());
        let code = UseCodeText::from_random(&[0xA5; 10]);
        assert_eq!(code.as_str().len(), USE_CODE_CHARS);
        let grouped = code.grouped();
        assert_eq!(grouped.len(), 20);
        assert_eq!(UseCodeText::parse(&grouped).unwrap(), code);
        assert_eq!(
            UseCodeText::parse(&grouped.to_lowercase().replace('-', " ")).unwrap(),
            code
        );
        // 80 bits: two codes of different randomness differ.
        assert_ne!(UseCodeText::from_random(&[0; 10]), code);
    }

    #[test]
    fn every_single_typo_and_neighbour_swap_is_caught() {
        let code = UseCodeText::from_random(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let chars: Vec<u8> = code.as_str().bytes().collect();
        for i in 0..USE_CODE_CHARS {
            for a in ALPHABET {
                if *a == chars[i] {
                    continue;
                }
                let mut typo = chars.clone();
                typo[i] = *a;
                assert!(UseCodeText::parse(std::str::from_utf8(&typo).unwrap()).is_err());
            }
            if i + 1 < USE_CODE_CHARS && chars[i] != chars[i + 1] {
                let mut swap = chars.clone();
                swap.swap(i, i + 1);
                assert!(UseCodeText::parse(std::str::from_utf8(&swap).unwrap()).is_err());
            }
        }
    }

    #[test]
    fn qr_strings_name_code_and_licence() {
        let code = UseCodeText::from_random(&[7; 10]);
        let issuer: CreditCode = "11100000000013338W".parse().unwrap();
        let type_code: crate::ids::TypeCode = "11100000000013338W001".parse().unwrap();
        let licence = LicenceId::new(&type_code, &issuer, "0001", 1).unwrap();
        let qr = code.qr_string(&licence);
        assert!(qr.starts_with("CSU:1:"));
        assert!(
            qr.chars()
                .all(|c| "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:".contains(c))
        );
        let (c, l) = parse_presented(&qr).unwrap();
        assert_eq!((c, l), (code.clone(), Some(licence)));
        assert_eq!(parse_presented(code.as_str()).unwrap().1, None);
        assert!(parse_presented("CSU:2:x:y").is_err());
    }
}
