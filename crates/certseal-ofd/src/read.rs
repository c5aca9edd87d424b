//! Reading a sealed OFD file and checking what the file itself can prove: every file the
//! signature lists has the SM3 digest it gives, every file of the package is listed (but the
//! signature's own), the SES_Signature's dataHash is SM3 of `Signature.xml`, its SM2 signature
//! verifies with the certificate it carries, and its seal's maker signature verifies. Whom
//! the certificate belongs to, and whether that seal could sign then, the caller decides.

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use certseal_crypto::ses::{SeSeal, SesSignature};
use certseal_crypto::sm::{sm3, verify_sm2};
use certseal_crypto::x509;

use crate::OfdError;

/// Largest OFD file read.
pub const MAX_OFD_BYTES: usize = 16 << 20;
/// Most files in a package.
const MAX_ENTRIES: usize = 512;
/// Largest file inside a package, uncompressed.
const MAX_ENTRY_BYTES: u64 = 16 << 20;
/// Most bytes all files of a package may expand to.
const MAX_TOTAL_BYTES: u64 = 64 << 20;
/// Largest XML file parsed (a licence's are a few KiB).
const MAX_XML_BYTES: usize = 1 << 20;
/// Most nodes in one XML file.
const MAX_XML_NODES: u32 = 100_000;

fn format(e: impl Into<String>) -> OfdError {
    OfdError::Format(e.into())
}

/// A sealed OFD file whose package and signature check out.
#[derive(Debug, Clone)]
pub struct SealedFile {
    /// The document's custom data, `Name` → value, in file order.
    pub custom_data: Vec<(String, String)>,
    /// The SES_Signature.
    pub signature: SesSignature,
    /// When it was signed (Unix seconds, from the SES_Signature's timeInfo).
    pub signed_at: i64,
    /// The files the signature covers, by path.
    pub covered: Vec<String>,
    files: BTreeMap<String, Vec<u8>>,
}

impl SealedFile {
    /// The custom data value named `name`.
    pub fn custom(&self, name: &str) -> Option<&str> {
        self.custom_data
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The seal in the signature.
    pub fn seal(&self) -> &SeSeal {
        &self.signature.seal
    }

    /// A file of the package (path without a leading '/').
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }
}

/// Every file of the package by its path (no leading '/').
fn unzip(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, OfdError> {
    if bytes.len() > MAX_OFD_BYTES {
        return Err(format(format!(
            "{} bytes; at most {MAX_OFD_BYTES} are read",
            bytes.len()
        )));
    }
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format(format!("not a ZIP package: {e}")))?;
    if z.len() > MAX_ENTRIES {
        return Err(format(format!("more than {MAX_ENTRIES} files")));
    }
    // Readers differ on a name given twice or a local header the directory does not list:
    // what one shows, another would check. Such a package is refused outright.
    z.validate_header_consistency().map_err(|e| {
        format(format!(
            "inconsistent package (a name twice, overlapping entries, or a file the directory does not list): {e}"
        ))
    })?;
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for i in 0..z.len() {
        let mut f = z
            .by_index(i)
            .map_err(|e| format(format!("file {i} of the package: {e}")))?;
        let decoded = f
            .name()
            .map_err(|e| format(format!("file {i} of the package: {e}")))?
            .into_owned();
        // A non-ASCII name must be flagged UTF-8: readers decode an unflagged one as CP437,
        // another name than the bytes say.
        if decoded.as_bytes() != f.name_raw() || decoded.contains('\\') {
            return Err(format(format!(
                "file {i} of the package has a name that readers would read differently"
            )));
        }
        if f.is_dir() {
            if f.size() > 0 {
                return Err(format(format!("{decoded} is a folder with content")));
            }
            continue;
        }
        let name = decoded.trim_start_matches('/').to_owned();
        let mut data = Vec::new();
        // The declared size is the writer's word: read at most one byte past the limit.
        (&mut f)
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(|e| format(format!("{name}: {e}")))?;
        if data.len() as u64 > MAX_ENTRY_BYTES {
            return Err(format(format!(
                "{name}: larger than {MAX_ENTRY_BYTES} bytes"
            )));
        }
        total += data.len() as u64;
        if total > MAX_TOTAL_BYTES {
            return Err(format(format!(
                "the files expand to more than {MAX_TOTAL_BYTES} bytes"
            )));
        }
        if files.insert(name.clone(), data).is_some() {
            return Err(format(format!("{name} appears twice")));
        }
    }
    Ok(files)
}

fn xml<'a>(
    files: &'a BTreeMap<String, Vec<u8>>,
    path: &str,
) -> Result<roxmltree::Document<'a>, OfdError> {
    let bytes = files
        .get(path)
        .ok_or_else(|| format(format!("{path} is missing")))?;
    // Parsed before any digest is checked: bounded in size and in nodes.
    if bytes.len() > MAX_XML_BYTES {
        return Err(format(format!(
            "{path} has {} bytes, at most {MAX_XML_BYTES} are parsed",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| format(format!("{path} is not UTF-8")))?;
    roxmltree::Document::parse_with_options(
        text,
        roxmltree::ParsingOptions {
            allow_dtd: false,
            nodes_limit: MAX_XML_NODES,
        },
    )
    .map_err(|e| format(format!("{path}: {e}")))
}

/// Children and descendants by local name (readers write the `ofd:` prefix or none).
fn find<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == name)
}

fn text_of(node: Option<roxmltree::Node<'_, '_>>) -> Option<String> {
    node.and_then(|n| n.text()).map(|t| t.trim().to_owned())
}

/// Resolves a location inside the package: absolute ("/Doc_0/…") or relative to `base`'s
/// folder.
fn resolve(base: &str, loc: &str) -> Result<String, OfdError> {
    let joined = if let Some(abs) = loc.strip_prefix('/') {
        abs.to_owned()
    } else {
        match base.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{loc}"),
            None => loc.to_owned(),
        }
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts
                    .pop()
                    .ok_or_else(|| format(format!("{loc} leaves the package")))?;
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn digest_err(e: impl Into<String>) -> OfdError {
    OfdError::Digest(e.into())
}

/// Reads a sealed OFD file and checks its package and its one seal signature (see the module).
pub fn open_sealed(bytes: &[u8]) -> Result<SealedFile, OfdError> {
    let files = unzip(bytes)?;
    let ofd = xml(&files, "OFD.xml")?;
    let body = find(ofd.root(), "DocBody").ok_or_else(|| format("OFD.xml has no DocBody"))?;
    let custom_data: Vec<(String, String)> = body
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "CustomData")
        .map(|n| {
            (
                n.attribute("Name").unwrap_or_default().to_owned(),
                n.text().unwrap_or_default().trim().to_owned(),
            )
        })
        .collect();
    let signatures_loc = text_of(find(body, "Signatures"))
        .ok_or_else(|| format("the file is not sealed: OFD.xml names no Signatures"))?;
    let signatures_path = resolve("OFD.xml", &signatures_loc)?;
    let signatures = xml(&files, &signatures_path)?;
    let listed: Vec<_> = signatures
        .root()
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "Signature")
        .collect();
    let [entry] = listed.as_slice() else {
        return Err(format(format!(
            "{} signatures; a licence file has exactly one",
            listed.len()
        )));
    };
    let signature_path = resolve(
        &signatures_path,
        entry
            .attribute("BaseLoc")
            .ok_or_else(|| format("a Signature without BaseLoc"))?,
    )?;
    let signature_bytes = files
        .get(&signature_path)
        .ok_or_else(|| format(format!("{signature_path} is missing")))?;
    let sig_doc = xml(&files, &signature_path)?;
    let root = sig_doc.root();
    let value_path = resolve(
        &signature_path,
        &text_of(find(root, "SignedValue")).ok_or_else(|| format("no SignedValue"))?,
    )?;
    let refs = find(root, "References").ok_or_else(|| format("no References"))?;
    let method = refs.attribute("CheckMethod").unwrap_or("MD5");
    if !(method.eq_ignore_ascii_case("SM3") || method == crate::write::SM3_OID) {
        return Err(format(format!(
            "references are checked with {method}; only SM3 is accepted"
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut covered = Vec::new();
    for r in refs
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "Reference")
    {
        let loc = r
            .attribute("FileRef")
            .ok_or_else(|| format("a Reference without FileRef"))?;
        let path = resolve(&signature_path, loc)?;
        let want = text_of(find(r, "CheckValue"))
            .and_then(|v| b64.decode(v).ok())
            .ok_or_else(|| format(format!("{loc}: no base64 CheckValue")))?;
        let data = files
            .get(&path)
            .ok_or_else(|| digest_err(format!("{loc} is listed but not in the package")))?;
        if sm3(&[data]).as_slice() != want.as_slice() {
            return Err(digest_err(format!(
                "{loc} was changed: its SM3 digest differs"
            )));
        }
        covered.push(path);
    }
    // Anything the signature does not cover could have been added after it.
    for path in files.keys() {
        let own = *path == signatures_path || *path == signature_path || *path == value_path;
        if !own && !covered.contains(path) {
            return Err(digest_err(format!(
                "{path} is not covered by the signature"
            )));
        }
    }
    let value = files
        .get(&value_path)
        .ok_or_else(|| format(format!("{value_path} is missing")))?;
    let signature = SesSignature::from_der(value)
        .map_err(|e| OfdError::Signature(format!("SignedValue.dat: {e}")))?;
    if signature.signature_algorithm != certseal_crypto::ses::SM2_WITH_SM3_OID {
        return Err(OfdError::Signature(format!(
            "signature algorithm {}; only SM2-with-SM3 is accepted",
            signature.signature_algorithm
        )));
    }
    if signature.data_hash != sm3(&[signature_bytes]) {
        return Err(digest_err(format!(
            "{signature_path} was changed: the signature's dataHash is not its SM3 digest"
        )));
    }
    // Which files are the signature's own was read from unsigned files; what the signature
    // itself says it covers must agree, and the package's root is always covered.
    if resolve("", &signature.property_info)? != signature_path {
        return Err(OfdError::Signature(format!(
            "the signature says it covers {}, but is listed for {signature_path}",
            signature.property_info
        )));
    }
    if !covered.iter().any(|p| p == "OFD.xml") {
        return Err(digest_err("OFD.xml is not covered by the signature"));
    }
    if !signature.seal.cert_list.contains(&signature.cert) {
        return Err(OfdError::Signature(
            "the signer's certificate is not among the seal's certificates".into(),
        ));
    }
    let signer_key = x509::subject_public_key(&signature.cert)
        .map_err(|e| OfdError::Signature(format!("signer certificate: {e}")))?;
    verify_sm2(&signer_key, &signature.tbs, &signature.signature).map_err(|_| {
        OfdError::Signature("the SM2 signature does not verify with its certificate".into())
    })?;
    let seal = &signature.seal;
    let maker_key = x509::subject_public_key(&seal.maker_cert)
        .map_err(|e| OfdError::Signature(format!("seal maker certificate: {e}")))?;
    verify_sm2(&maker_key, &seal.signed_data, &seal.signature)
        .map_err(|_| OfdError::Signature("the seal's maker signature does not verify".into()))?;
    let signed_at = certseal_crypto::ses::unix_time(&signature.time)
        .map_err(|e| OfdError::Signature(format!("timeInfo: {e}")))?;
    drop(sig_doc);
    drop(signatures);
    drop(ofd);
    Ok(SealedFile {
        custom_data,
        signature,
        signed_at,
        covered,
        files,
    })
}

/// The custom data of any OFD file, sealed or not (for a view, which has no signature).
pub fn custom_data(bytes: &[u8]) -> Result<Vec<(String, String)>, OfdError> {
    let files = unzip(bytes)?;
    let ofd = xml(&files, "OFD.xml")?;
    Ok(ofd
        .root()
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "CustomData")
        .map(|n| {
            (
                n.attribute("Name").unwrap_or_default().to_owned(),
                n.text().unwrap_or_default().trim().to_owned(),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_inside_the_package_only() {
        assert_eq!(
            resolve("Doc_0/Signs/Signatures.xml", "Sign_0/Signature.xml").unwrap(),
            "Doc_0/Signs/Sign_0/Signature.xml"
        );
        assert_eq!(
            resolve("x/y.xml", "/Doc_0/Signs/Sign_0/SignedValue.dat").unwrap(),
            "Doc_0/Signs/Sign_0/SignedValue.dat"
        );
        assert_eq!(resolve("OFD.xml", "Doc_0/../a.xml").unwrap(), "a.xml");
        assert!(resolve("OFD.xml", "../../etc/passwd").is_err());
    }
}
