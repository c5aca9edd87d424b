//! The font embedded in an OFD file: a subset, with only the glyphs the page uses and a Unicode
//! cmap, of a monospaced CJK TrueType face (by default WenQuanYi Zen Hei Mono, face 1 of
//! Debian's fonts-wqy-zenhei, GPLv2 with a font embedding exception). Monospaced, so that the
//! layout knows every advance without the font's metrics: a full-width character advances one
//! em, an ASCII one half an em.

use std::collections::BTreeSet;
use std::path::Path;

use allsorts::binary::read::ReadScope;
use allsorts::font::read_cmap_subtable;
use allsorts::font_data::FontData;
use allsorts::subset::{CmapTarget, SubsetProfile, subset};
use allsorts::tables::FontTableProvider;
use allsorts::tables::cmap::Cmap;
use allsorts::tag;

use crate::OfdError;

/// Debian's fonts-wqy-zenhei.
pub const DEFAULT_FONT_PATH: &str = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc";
/// WenQuanYi Zen Hei Mono in that collection.
pub const DEFAULT_FONT_INDEX: usize = 1;
/// Largest font file read.
const MAX_FONT_BYTES: u64 = 64 << 20;

fn bad(e: impl std::fmt::Display) -> OfdError {
    OfdError::Font(e.to_string())
}

/// A font file held in memory, one face of which is subset per OFD file.
pub struct Font {
    data: Vec<u8>,
    index: usize,
    /// The face's family name, as the OFD file names it.
    pub family: String,
}

impl std::fmt::Debug for Font {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Font")
            .field("family", &self.family)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl Font {
    /// Reads face `index` of the TrueType file or collection at `path`.
    pub fn load(path: &Path, index: usize) -> Result<Self, OfdError> {
        let len = std::fs::metadata(path)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?
            .len();
        if len > MAX_FONT_BYTES {
            return Err(bad(format!("{}: larger than 64 MiB", path.display())));
        }
        let data = std::fs::read(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        Self::from_bytes(data, index)
    }

    /// Takes face `index` of a TrueType file or collection.
    pub fn from_bytes(data: Vec<u8>, index: usize) -> Result<Self, OfdError> {
        let family = {
            let font = ReadScope::new(&data).read::<FontData<'_>>().map_err(bad)?;
            let provider = font.table_provider(index).map_err(bad)?;
            if !provider.has_table(tag::GLYF) {
                return Err(bad("only TrueType (glyf) faces can be subset here"));
            }
            family_name(&provider).unwrap_or_else(|| "certseal".to_owned())
        };
        let f = Self {
            data,
            index,
            family,
        };
        // A face without the common ideographs cannot draw a licence.
        f.glyphs("证照")?;
        Ok(f)
    }

    /// The glyph IDs of `text`'s characters, with .notdef; a character the face lacks is an
    /// error rather than a box on the page.
    fn glyphs(&self, text: &str) -> Result<Vec<u16>, OfdError> {
        let font = ReadScope::new(&self.data)
            .read::<FontData<'_>>()
            .map_err(bad)?;
        let provider = font.table_provider(self.index).map_err(bad)?;
        let cmap_data = provider.read_table_data(tag::CMAP).map_err(bad)?;
        let cmap = ReadScope::new(&cmap_data).read::<Cmap<'_>>().map_err(bad)?;
        let (_, sub) = read_cmap_subtable(&cmap)
            .map_err(bad)?
            .ok_or_else(|| bad("the face has no Unicode cmap"))?;
        let mut ids = BTreeSet::from([0u16]);
        for c in text.chars().filter(|c| !c.is_control()) {
            match sub.map_glyph(u32::from(c)).map_err(bad)? {
                Some(g) if g != 0 => {
                    ids.insert(g);
                }
                _ => {
                    return Err(OfdError::Font(format!(
                        "the font {} has no glyph for '{c}' (U+{:04X})",
                        self.family,
                        u32::from(c)
                    )));
                }
            }
        }
        Ok(ids.into_iter().collect())
    }

    /// A standalone TrueType font with only the glyphs of `text` and a Unicode cmap for them.
    pub fn subset(&self, text: &str) -> Result<Vec<u8>, OfdError> {
        let ids = self.glyphs(text)?;
        let font = ReadScope::new(&self.data)
            .read::<FontData<'_>>()
            .map_err(bad)?;
        let provider = font.table_provider(self.index).map_err(bad)?;
        subset(
            &provider,
            &ids,
            &SubsetProfile::Minimal,
            CmapTarget::Unicode,
        )
        .map_err(bad)
    }
}

/// The family name (name ID 1), from a Windows Unicode record.
fn family_name(provider: &impl FontTableProvider) -> Option<String> {
    let data = provider.read_table_data(tag::NAME).ok()?;
    let name = ReadScope::new(&data)
        .read::<allsorts::tables::NameTable<'_>>()
        .ok()?;
    name.name_records.iter().find_map(|r| {
        if r.name_id != 1 || r.platform_id != 3 {
            return None;
        }
        let bytes = name
            .string_storage
            .offset_length(usize::from(r.offset), usize::from(r.length))
            .ok()?
            .data();
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .collect();
        String::from_utf16(&units).ok()
    })
}

/// How far a character advances, in ems, in a monospaced CJK face.
pub fn advance_em(c: char) -> f64 {
    if c.is_ascii() { 0.5 } else { 1.0 }
}
