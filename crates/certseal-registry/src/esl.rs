//! The GB/T 38540 seal (SESeal, version 4) of an SM2 seal: what Chinese readers take as the
//! seal itself. The registry's SM2 seal CA makes it as the seal maker, once the seal has its
//! certificate, over the seal's name, type, certificate, validity and image.

use certseal_core::{ImageFormat, Seal, SealType, Timestamp};
use certseal_crypto::ses::{self, SealPicture};
use certseal_crypto::sm::Sm2Key;

use crate::RegistryError;

/// The maker's vendor ID (Vid) in the seal's header.
pub const VENDOR_ID: &str = "certseal";
/// Width of the seal's picture on paper: a round official seal is about 40 mm across.
const PICTURE_WIDTH_MM: i64 = 40;

fn crypto(e: certseal_crypto::CryptoError) -> RegistryError {
    RegistryError::Corrupt(format!("making the GB/T 38540 seal: {e}"))
}

/// GB/T 38540's seal type: 1 an organisation's seal, 2 a person's.
pub fn ses_seal_type(t: SealType) -> i64 {
    match t {
        SealType::PersonalName => 2,
        SealType::Official | SealType::SpecialPurpose | SealType::Contract | SealType::Finance => 1,
    }
}

/// The esID: the national seal code (全国统一印章编码) when the seal has one, else its ID.
pub fn es_id(seal: &Seal) -> String {
    seal.national_code
        .clone()
        .unwrap_or_else(|| seal.id.to_string())
}

/// Height in millimetres for the picture's aspect (PNG: from IHDR; SVG: square).
fn height_mm(format: ImageFormat, image: &[u8]) -> i64 {
    if format == ImageFormat::Png && image.len() >= 24 {
        let w = u32::from_be_bytes([image[16], image[17], image[18], image[19]]);
        let h = u32::from_be_bytes([image[20], image[21], image[22], image[23]]);
        if w > 0 && h > 0 {
            return (PICTURE_WIDTH_MM * i64::from(h) / i64::from(w)).clamp(1, 4 * PICTURE_WIDTH_MM);
        }
    }
    PICTURE_WIDTH_MM
}

/// Makes the seal's SESeal, valid over the seal's window, signed by `maker` (the SM2 seal CA)
/// whose certificate is `maker_cert`.
pub fn make_esl(
    seal: &Seal,
    image: &[u8],
    maker: &Sm2Key,
    maker_cert: &[u8],
    created: Timestamp,
) -> Result<Vec<u8>, RegistryError> {
    let cert = seal
        .certificate
        .clone()
        .ok_or_else(|| RegistryError::Corrupt(format!("seal {} has no certificate", seal.id)))?;
    let picture = SealPicture {
        kind: match seal.image_format {
            ImageFormat::Png => "PNG",
            ImageFormat::Svg => "SVG",
        }
        .to_owned(),
        data: image.to_vec(),
        width_mm: PICTURE_WIDTH_MM,
        height_mm: height_mm(seal.image_format, image),
    };
    let secs = |t: Timestamp| t.0.div_euclid(1000);
    let es_id = es_id(seal);
    ses::make_seal(
        &ses::NewSeal {
            vid: VENDOR_ID,
            es_id: &es_id,
            seal_type: ses_seal_type(seal.seal_type),
            name: &seal.name,
            cert_list: &[cert],
            created: secs(created),
            valid_start: secs(seal.lifecycle.not_before),
            valid_end: secs(seal.lifecycle.not_after),
            picture: &picture,
        },
        maker,
        maker_cert,
    )
    .map_err(crypto)
}
