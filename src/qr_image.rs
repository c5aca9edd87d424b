//! QR codes as images: drawn for printing (`certseal licence qr --png`, the public page) and
//! read back from an uploaded scan or photo.

use std::io::Cursor;

/// Largest side, in pixels, of an image that is read; larger ones are refused unread.
pub const MAX_SIDE: u32 = 4000;
/// Photos are scaled down to this side before the search: the search costs time per pixel,
/// and a code that fills a tenth of a phone photo is still 160 pixels wide at this size.
const SEARCH_SIDE: u32 = 1600;

/// Why a QR image could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum QrImageError {
    /// Not a PNG or JPEG, or damaged.
    #[error("the file is not a PNG or JPEG image, or it is damaged ({0})")]
    Unreadable(String),
    /// Declared dimensions beyond [`MAX_SIDE`].
    #[error("the image is larger than {MAX_SIDE}×{MAX_SIDE} pixels")]
    TooLarge,
    /// No finder patterns anywhere.
    #[error("no QR code was found in the image")]
    NoCode,
    /// Found, but its modules do not decode.
    #[error("a QR code was found but could not be read ({0}); try a sharper, straighter picture")]
    Undecodable(String),
    /// The text does not fit in a QR code at level M, whose largest (version 40) holds 3,391
    /// alphanumeric characters, as in a licence's QR string, or 2,331 bytes of other text.
    #[error(
        "the text has {0} characters, more than a QR code holds at error correction level M \
         (version 40: 3,391 of 0-9, A-Z, space and $%*+-./:, as in a licence's QR string; 2,331 bytes of other text)"
    )]
    TooLong(usize),
}

fn code(text: &str) -> Result<qrcode::QrCode, QrImageError> {
    // Medium error correction survives a crease or a smudge on paper.
    qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|_| QrImageError::TooLong(text.chars().count()))
}

/// A PNG of the QR code of `text`: 4 pixels per module, with its quiet zone.
pub fn png(text: &str) -> Result<Vec<u8>, QrImageError> {
    let image = code(text)?
        .render::<image::Luma<u8>>()
        .module_dimensions(4, 4)
        .quiet_zone(true)
        .build();
    let mut out = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| QrImageError::Unreadable(e.to_string()))?;
    Ok(out)
}

/// An SVG of the QR code of `text`, at least `side` units wide, to inline in a page.
pub fn svg(text: &str, side: u32) -> Result<String, QrImageError> {
    Ok(code(text)?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(side, side)
        .quiet_zone(true)
        .build())
}

/// The text of the first QR code found in a PNG or JPEG image.
pub fn read(bytes: &[u8]) -> Result<String, QrImageError> {
    let unreadable = |e: &dyn std::fmt::Display| QrImageError::Unreadable(e.to_string());
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| unreadable(&e))?;
    if !matches!(
        reader.format(),
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg)
    ) {
        return Err(QrImageError::Unreadable("unknown format".into()));
    }
    // Dimensions are checked before any pixel is decoded: a small file may declare a huge image.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(128 << 20);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => QrImageError::TooLarge,
        e => unreadable(&e),
    })?;
    let mut grey = decoded.into_luma8();
    let (w, h) = grey.dimensions();
    if w.max(h) > SEARCH_SIDE {
        let scale = f64::from(SEARCH_SIDE) / f64::from(w.max(h));
        let (nw, nh) = (
            ((f64::from(w) * scale) as u32).max(1),
            ((f64::from(h) * scale) as u32).max(1),
        );
        grey = image::imageops::resize(&grey, nw, nh, image::imageops::FilterType::Triangle);
    }
    let (w, h) = grey.dimensions();
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(w as usize, h as usize, |x, y| {
            grey.get_pixel(x as u32, y as u32).0[0]
        });
    let grids = prepared.detect_grids();
    let mut last = None;
    for g in grids {
        match g.decode() {
            Ok((_, text)) => return Ok(text),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => QrImageError::Undecodable(e.to_string()),
        None => QrImageError::NoCode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "CS1:6BFOXN*TS0BI$ZD-PHQ7I9AD66V5B22CH9M9ESI9XBHXK-%69LQOGI.*V76GCV4*XUA2P-FHT-HNTI4L6N$Q%UG/YL WO*Z7ON15 BM0VM.JQ$F4W17PG4.VAS5EG4V*BRL0K-RDY5RWOOH6PO9:TUQJAJG9-*NIRICVELZUZM9EN$QOH6";

    #[test]
    fn a_drawn_code_reads_back() {
        let png = png(TEXT).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        assert_eq!(read(&png).unwrap(), TEXT);
    }

    #[test]
    fn a_scaled_down_photo_still_reads() {
        // A code in the corner of a large light-grey picture, as a phone might take it.
        let code = image::load_from_memory(&png(TEXT).unwrap())
            .unwrap()
            .into_luma8();
        let mut photo = image::GrayImage::from_pixel(3000, 2200, image::Luma([200]));
        image::imageops::overlay(
            &mut photo,
            &image::imageops::resize(
                &code,
                code.width() * 3,
                code.height() * 3,
                image::imageops::FilterType::Nearest,
            ),
            400,
            300,
        );
        let mut jpeg = Vec::new();
        photo
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        assert_eq!(read(&jpeg).unwrap(), TEXT);
    }

    #[test]
    fn other_files_are_refused_with_the_reason() {
        assert!(matches!(
            read(b"GIF89a...."),
            Err(QrImageError::Unreadable(_))
        ));
        assert!(matches!(
            read(b"\x89PNG\r\n\x1a\nbroken"),
            Err(QrImageError::Unreadable(_))
        ));
        let blank = image::GrayImage::from_pixel(200, 200, image::Luma([255]));
        let mut out = Vec::new();
        blank
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        assert!(matches!(read(&out), Err(QrImageError::NoCode)));
    }

    #[test]
    fn a_huge_declared_image_is_refused_before_decoding() {
        // A PNG header claiming 60000×60000 pixels, with no pixel data.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&60_000u32.to_be_bytes());
        ihdr.extend_from_slice(&60_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let crc = crc32(&ihdr);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc.to_be_bytes());
        assert!(matches!(read(&png), Err(QrImageError::TooLarge)));
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for b in bytes {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
