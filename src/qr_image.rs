//! QR codes as images: drawn for printing (`certseal licence qr --png`, the public page) and
//! read back from an uploaded scan or photo.

use std::io::Cursor;

/// Largest side, in pixels, of an image that is read; larger ones are refused unread.
pub const MAX_SIDE: u32 = 4000;
/// Most pixels searched: larger pictures are scaled down first. A 4:3 phone photo keeps
/// 1633×1225 pixels, so a code across a tenth of it is still 160 pixels wide.
pub const SEARCH_PIXELS: u64 = 2_000_000;
/// Most finder-pattern candidates searched. A licence's code has three; the rest is slack for
/// shapes in the picture around it (a 回 or 国 in printed text looks like one). The decoder
/// tries candidates three at a time, copying the picture for each try: thousands of them
/// would keep a core busy for minutes.
pub const MAX_FINDER_PATTERNS: usize = 12;
/// The decoder remembers this many dark regions; looking at one more repaints the least
/// recently seen one back (rqrr's `PreparedImage` cache).
const DECODER_REGIONS: usize = 251;
/// Most pixels the decoder's region look-ups may paint, per pixel searched: at 2 million
/// pixels, about half a second of its flood fills. A photo costs about one (each region
/// painted once); stripes that make it forget and repaint regions on every row cost hundreds
/// (1400×600 pixels of them took it 8 seconds).
const MAX_PAINT_PER_PIXEL: u64 = 8;

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
    /// More shapes like a code's corner squares than a picture of one licence holds, or a
    /// picture that would cost the decoder too much to search: refused before the search.
    #[error(
        "no licence QR code found: {0}; take a picture of the licence's QR code alone, filling most of the frame"
    )]
    Cluttered(Clutter),
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

/// Why a picture was refused before the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clutter {
    /// This many finder-pattern candidates, beyond [`MAX_FINDER_PATTERNS`].
    FinderPatterns(usize),
    /// Its regions would cost the decoder this many pixels painted, beyond
    /// [`MAX_PAINT_PER_PIXEL`] per pixel.
    Paint(u64),
}

impl std::fmt::Display for Clutter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FinderPatterns(n) => write!(
                f,
                "the picture holds {n} shapes like a QR code's corner squares (a licence's code has 3; at most {MAX_FINDER_PATTERNS} are searched)"
            ),
            Self::Paint(_) => write!(f, "the picture is too busy to search"),
        }
    }
}

/// The text of the first QR code found in a PNG or JPEG image. The work is bounded by the
/// picture's size: at most [`SEARCH_PIXELS`] are searched, and a picture with more than
/// [`MAX_FINDER_PATTERNS`] candidates (or regions that would make the decoder repaint most of
/// it on every row) is refused before the decoder's pairwise search starts.
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
    if u64::from(w) * u64::from(h) > SEARCH_PIXELS {
        let scale = (SEARCH_PIXELS as f64 / (f64::from(w) * f64::from(h))).sqrt();
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
    drop(grey);
    let dark: Vec<bool> = (0..h as usize)
        .flat_map(|y| (0..w as usize).map(move |x| (x, y)))
        .map(|(x, y)| prepared.get_pixel_at(x, y) != 0u8)
        .collect();
    survey(&dark, w as usize).map_err(QrImageError::Cluttered)?;
    drop(dark);
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

/// What the decoder's search would meet in a thresholded picture (`dark`, rows of `width`),
/// found in passes linear in its pixels: the finder-pattern candidates it would try to group,
/// and the pixels its region look-ups would paint. `Err` when either is beyond its bound.
///
/// rqrr scans each row for dark and light runs in the ratio 1:1:3:1:1 and, at each such hit,
/// looks up the dark region under the ring and the one under the stone, flood-filling any it
/// does not remember. A hit is a candidate when the ring's region joins the hit's two ends,
/// the stone's is another region, and the stone is 10 % to 70 % of the ring. This does the
/// same on the same pixels, with regions labelled once, so it counts every candidate the
/// decoder would find (a ring counts once, as there).
fn survey(dark: &[bool], width: usize) -> Result<(), Clutter> {
    let regions = Regions::label(dark, width);
    let mut rings = std::collections::HashSet::new();
    let mut cache = RegionCache::new(regions.sizes.len(), DECODER_REGIONS);
    let budget = MAX_PAINT_PER_PIXEL * dark.len() as u64;
    let mut paint = 0u64;
    for (y, row) in dark.chunks(width.max(1)).enumerate() {
        let at = |x: usize| regions.label[y * width + x];
        for hit in row_hits(row) {
            let (ring, stone) = (at(hit.right), at(hit.stone));
            paint += cache.look_up(ring, &regions.sizes) + cache.look_up(stone, &regions.sizes);
            if paint > budget {
                return Err(Clutter::Paint(paint));
            }
            let ratio = regions.sizes[stone as usize] * 100 / regions.sizes[ring as usize];
            if at(hit.left) == ring && ring != stone && 10 < ratio && ratio < 70 {
                rings.insert(ring);
                if rings.len() > MAX_FINDER_PATTERNS {
                    return Err(Clutter::FinderPatterns(rings.len()));
                }
            }
        }
    }
    Ok(())
}

/// Where a 1:1:3:1:1 run pattern starts on a row: its first, middle and last dark runs.
#[derive(Debug, Clone, Copy)]
struct Hit {
    left: usize,
    stone: usize,
    right: usize,
}

/// The decoder's row scan (rqrr's `LineScanner`, the same arithmetic), with a light pixel
/// past the row's end.
fn row_hits(row: &[bool]) -> impl Iterator<Item = Hit> + '_ {
    let mut runs = [0usize; 5];
    let mut run = 1;
    let mut changes = 0;
    let mut last = row.first().copied().unwrap_or(false);
    (1..=row.len()).filter_map(move |x| {
        let dark = row.get(x).copied().unwrap_or(false);
        if dark == last {
            run += 1;
            return None;
        }
        last = dark;
        runs.rotate_left(1);
        runs[4] = run;
        run = 1;
        changes += 1;
        if dark || changes < 5 {
            return None;
        }
        let avg = (runs[0] + runs[1] + runs[3] + runs[4]) / 4;
        let err = avg * 3 / 4;
        let fits = runs
            .iter()
            .zip([1, 1, 3, 1, 1])
            .all(|(&r, k)| r >= k * avg - err && r <= k * avg + err);
        fits.then(|| Hit {
            left: x - runs.iter().sum::<usize>(),
            stone: x - runs[2..].iter().sum::<usize>(),
            right: x - runs[4],
        })
    })
}

/// Dark pixels labelled by 4-connected region, as the decoder's flood fill joins them.
struct Regions {
    /// Per pixel: its region, or `u32::MAX` for light pixels.
    label: Vec<u32>,
    /// Pixels per region.
    sizes: Vec<u64>,
}

impl Regions {
    fn label(dark: &[bool], width: usize) -> Self {
        let mut label = vec![u32::MAX; dark.len()];
        let mut sizes = Vec::new();
        let mut stack = Vec::new();
        for start in 0..dark.len() {
            if !dark[start] || label[start] != u32::MAX {
                continue;
            }
            let id = sizes.len() as u32;
            let mut size = 0u64;
            label[start] = id;
            stack.push(start);
            // Each pixel is labelled when pushed, so pushed once: linear in pixels.
            while let Some(i) = stack.pop() {
                size += 1;
                let x = i % width;
                let neighbours = [
                    (x > 0).then(|| i - 1),
                    (x + 1 < width).then(|| i + 1),
                    i.checked_sub(width),
                    Some(i + width).filter(|&j| j < dark.len()),
                ];
                for j in neighbours.into_iter().flatten() {
                    if dark[j] && label[j] == u32::MAX {
                        label[j] = id;
                        stack.push(j);
                    }
                }
            }
            sizes.push(size);
        }
        Self { label, sizes }
    }
}

/// The decoder's least-recently-used memory of regions, to count what its look-ups paint: a
/// region not remembered is painted, and, when the memory is full, the oldest one is painted
/// back. A doubly linked list over region labels: each look-up is O(1).
struct RegionCache {
    prev: Vec<u32>,
    next: Vec<u32>,
    held: Vec<bool>,
    /// Most and least recently looked up.
    head: u32,
    tail: u32,
    len: usize,
    capacity: usize,
}

const NONE: u32 = u32::MAX;

impl RegionCache {
    fn new(regions: usize, capacity: usize) -> Self {
        Self {
            prev: vec![NONE; regions],
            next: vec![NONE; regions],
            held: vec![false; regions],
            head: NONE,
            tail: NONE,
            len: 0,
            capacity,
        }
    }

    fn unlink(&mut self, r: u32) {
        let (p, n) = (self.prev[r as usize], self.next[r as usize]);
        match p {
            NONE => self.head = n,
            p => self.next[p as usize] = n,
        }
        match n {
            NONE => self.tail = p,
            n => self.prev[n as usize] = p,
        }
    }

    fn push_front(&mut self, r: u32) {
        self.prev[r as usize] = NONE;
        self.next[r as usize] = self.head;
        match self.head {
            NONE => self.tail = r,
            h => self.prev[h as usize] = r,
        }
        self.head = r;
    }

    /// Looks `r` up; returns the pixels painted.
    fn look_up(&mut self, r: u32, sizes: &[u64]) -> u64 {
        if self.held[r as usize] {
            self.unlink(r);
            self.push_front(r);
            return 0;
        }
        let mut painted = sizes[r as usize];
        if self.len == self.capacity {
            let old = self.tail;
            self.unlink(old);
            self.held[old as usize] = false;
            painted += sizes[old as usize];
        } else {
            self.len += 1;
        }
        self.held[r as usize] = true;
        self.push_front(r);
        painted
    }
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

    /// A PNG of finder patterns (7×7 modules of `module` pixels) every `pitch` pixels, on a
    /// `side`-pixel white square, leaving out those `skip` says.
    pub(crate) fn lattice(
        side: u32,
        module: u32,
        pitch: u32,
        skip: impl Fn(u32, u32) -> bool,
    ) -> Vec<u8> {
        let mut img = image::GrayImage::from_pixel(side, side, image::Luma([255]));
        for (i, top) in (pitch / 2..side.saturating_sub(7 * module))
            .step_by(pitch as usize)
            .enumerate()
        {
            for (j, left) in (pitch / 2..side.saturating_sub(7 * module))
                .step_by(pitch as usize)
                .enumerate()
            {
                if skip(i as u32, j as u32) {
                    continue;
                }
                for my in 0..7 {
                    for mx in 0..7 {
                        let ring = my == 0 || my == 6 || mx == 0 || mx == 6;
                        let stone = (2..=4).contains(&my) && (2..=4).contains(&mx);
                        if ring || stone {
                            for dy in 0..module {
                                for dx in 0..module {
                                    img.put_pixel(
                                        left + mx * module + dx,
                                        top + my * module + dy,
                                        image::Luma([0]),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        // Compressed hard, as an attacker would: a few kilobytes.
        let mut out = Vec::new();
        let encoder = image::codecs::png::PngEncoder::new_with_quality(
            &mut out,
            image::codecs::png::CompressionType::Best,
            image::codecs::png::FilterType::Adaptive,
        );
        img.write_with_encoder(encoder).unwrap();
        out
    }

    #[test]
    fn a_lattice_of_finder_patterns_is_refused_before_the_search() {
        // The picture seen in issue 17: ~3,000 patterns kept a core busy for minutes.
        let png = lattice(1600, 2, 28, |_, _| false);
        assert!(png.len() < 20_000, "{} bytes", png.len());
        match read(&png) {
            Err(e @ QrImageError::Cluttered(Clutter::FinderPatterns(n))) => {
                assert!(n > MAX_FINDER_PATTERNS, "{n}");
                assert!(e.to_string().starts_with("no licence QR code found"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_few_shapes_like_corner_squares_beside_the_code_are_searched() {
        // Four stray finder patterns in a row above a real code: within the slack.
        let strays = image::load_from_memory(&lattice(400, 4, 90, |i, _| i > 0))
            .unwrap()
            .into_luma8();
        let code = image::load_from_memory(&png(TEXT).unwrap())
            .unwrap()
            .into_luma8();
        let mut picture = image::GrayImage::from_pixel(1400, 1400, image::Luma([255]));
        image::imageops::overlay(&mut picture, &strays, 100, 0);
        image::imageops::overlay(&mut picture, &code, 100, 400);
        let mut out = Vec::new();
        picture
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(read(&out).unwrap(), TEXT);
    }

    #[test]
    fn stripes_that_would_make_the_decoder_repaint_every_row_are_refused() {
        // Full-height bars in the 1:1:3:1:1 pattern: a hit at every pattern on every row, and
        // more bars than the decoder remembers, so each hit would flood a whole bar again.
        let row: Vec<bool> = (0..1400)
            .map(|x| [true, false, true, true, true, false, true, false][x % 8])
            .collect();
        let dark: Vec<bool> = (0..1400).flat_map(|_| row.iter().copied()).collect();
        assert!(matches!(
            survey(&dark, 1400),
            Err(Clutter::Paint(p)) if p > MAX_PAINT_PER_PIXEL * 1400 * 1400
        ));
        // Fewer bars than it remembers are painted once each.
        let narrow: Vec<bool> = (0..1400).flat_map(|_| row[..800].iter().copied()).collect();
        assert_eq!(survey(&narrow, 800), Ok(()));
    }

    #[test]
    fn the_survey_counts_what_the_decoder_counts() {
        // Three patterns and a code: three candidates (plus any in the code's data).
        let png = lattice(300, 3, 100, |i, j| i == 1 && j == 1);
        let grey = image::load_from_memory(&png).unwrap().into_luma8();
        let dark: Vec<bool> = grey.pixels().map(|p| p.0[0] < 128).collect();
        assert_eq!(survey(&dark, 300), Ok(()));
        let png = lattice(1200, 3, 100, |_, _| false);
        let grey = image::load_from_memory(&png).unwrap().into_luma8();
        let dark: Vec<bool> = grey.pixels().map(|p| p.0[0] < 128).collect();
        assert_eq!(survey(&dark, 1200), Err(Clutter::FinderPatterns(13)));
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
