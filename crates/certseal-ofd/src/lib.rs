//! The licence as an OFD file (GB/T 33190): a one-page package laid out from the licence's
//! template, text drawn with an embedded subset of a CJK font, the QR code of the licence, and
//! GB/T 36903-style metadata in the document's custom data. With an SM2 seal the file is
//! sealed as GB/T 38540 prescribes (`Signs/Sign_0/Signature.xml` listing every file with its
//! SM3 digest, `SignedValue.dat` an SES_Signature over SM3 of `Signature.xml`); otherwise it is
//! an unsigned view that says so. [`read`] checks a sealed file.

pub mod font;
pub mod read;
pub mod write;

pub use font::Font;
pub use read::{SealedFile, open_sealed};
pub use write::{Face, LICENCE_ATTACHMENT, Row, Sealing, make};

/// What can go wrong making or reading an OFD file.
#[derive(Debug, thiserror::Error)]
pub enum OfdError {
    /// The font cannot be read, subset, or lacks a character.
    #[error("font: {0}")]
    Font(String),
    /// The package or one of its XML files is not as GB/T 33190 lays it out.
    #[error("OFD format: {0}")]
    Format(String),
    /// A file the signature covers was changed, removed, or added without being covered.
    #[error("OFD digest: {0}")]
    Digest(String),
    /// The SES_Signature or seal is malformed, or its signature does not verify.
    #[error("OFD signature: {0}")]
    Signature(String),
    /// Signing or encoding failed.
    #[error("OFD crypto: {0}")]
    Crypto(#[from] certseal_crypto::CryptoError),
}
