//! What the public verification page shows: a check by anyone holding a licence ID or its QR
//! code, recorded like any check (purpose `PUBLIC_PAGE`, in the name of the department that
//! runs the page), showing only what the template marks public.

use certseal_core::{Actor, CreditCode, FieldValue, HolderKind, ImageFormat, Role};

use crate::verification::Checker;
use crate::{Registry, RegistryError, Subject, TemplateSelector, Verification};

/// The purpose code every view of the public page is recorded with.
pub const PUBLIC_PAGE_PURPOSE: &str = "PUBLIC_PAGE";

/// One field of the licence as the public sees it.
#[derive(Debug, Clone)]
pub struct PublicField {
    /// The template's label.
    pub label: String,
    /// The value.
    pub value: String,
}

/// The seal that signed the licence.
#[derive(Debug, Clone)]
pub struct PublicSeal {
    /// Its name.
    pub name: String,
    /// Its image.
    pub image: Vec<u8>,
    /// PNG or SVG.
    pub format: ImageFormat,
}

/// A recorded check with what the page shows of the licence.
#[derive(Debug, Clone)]
pub struct PublicView {
    /// The check and its receipt.
    pub verification: Verification,
    /// The licence type's name.
    pub type_name: Option<String>,
    /// The issuing department's name.
    pub issuer_name: Option<String>,
    /// Every field of the template, in its order; personal ones without their value.
    pub fields: Vec<PublicField>,
    /// The signing seal.
    pub seal: Option<PublicSeal>,
}

/// A person's name as its first character and one star, whatever its length: 张三丰 → 张*.
pub fn mask_name(name: &str) -> String {
    match name.chars().next() {
        Some(first) => format!("{first}*"),
        None => String::new(),
    }
}

/// An identifier as its first and last characters around a fixed run of stars: neither the
/// region, the birth date nor the sex digit of a resident ID shows.
pub fn mask_id(id: &str) -> String {
    let mut chars = id.chars();
    match (chars.next(), chars.next_back()) {
        (Some(first), Some(last)) => format!("{first}{}{last}", "*".repeat(8)),
        _ => "*".repeat(8),
    }
}

fn text(v: &FieldValue) -> String {
    match v {
        FieldValue::Text(t) => t.clone(),
        FieldValue::Integer(i) => i.to_string(),
        FieldValue::Boolean(true) => "是 yes".to_owned(),
        FieldValue::Boolean(false) => "否 no".to_owned(),
    }
}

impl Registry {
    /// Checks a licence for the public page at this moment and records the receipt in the name
    /// of `page_department` (role verifier, purpose `PUBLIC_PAGE`). Needs no caller identity:
    /// what it returns is what the template marks public.
    pub async fn public_check(
        &self,
        page_department: &CreditCode,
        subject: Subject,
        use_code: Option<&str>,
    ) -> Result<PublicView, RegistryError> {
        let actor = Actor {
            department: page_department.clone(),
            role: Role::Verifier,
        };
        let code = match use_code {
            Some(text) => Some(self.presented_code(&actor, text)?.0),
            None => None,
        };
        let verification = self
            .record_check(
                &actor,
                Checker::Public,
                subject,
                PUBLIC_PAGE_PURPOSE,
                "public verification page",
                None,
                code,
            )
            .await?;
        let mut view = PublicView {
            verification,
            type_name: None,
            issuer_name: None,
            fields: Vec::new(),
            seal: None,
        };
        let Some(claims) = view.verification.claims.clone() else {
            return Ok(view);
        };
        // What follows only decorates the result: a record that cannot be read leaves its part
        // of the page empty rather than hiding the result.
        let stamp = self.records.stamp();
        if let Ok(Some(d)) = self
            .records
            .department(self.store.as_ref(), &stamp, &claims.issuer)
        {
            view.issuer_name = Some(d.name.clone());
        }
        if let Ok(t) = self.read_template(
            &claims.type_code,
            TemplateSelector::Version(claims.template_version),
        ) {
            view.type_name = Some(t.content.name.clone());
            // Only the public fields are listed: even the names of the personal fields a
            // licence happens to carry are none of the public's business.
            view.fields = t
                .content
                .fields
                .iter()
                .filter_map(|f| {
                    view.verification
                        .visible_fields
                        .get(&f.name)
                        .map(|v| PublicField {
                            label: f.label.clone(),
                            value: text(v),
                        })
                })
                .collect();
        }
        if let Ok(Some(s)) = self.records.seal(self.store.as_ref(), &stamp, &claims.seal)
            && let Ok(Some(image)) = self
                .store
                .get(certseal_store::Table::SealImages, &s.seal.image_digest)
        {
            view.seal = Some(PublicSeal {
                name: s.seal.name.clone(),
                image,
                format: s.seal.image_format,
            });
        }
        // The view carries nothing personal past this point, so no later change to the page
        // (or a debug log of the view) can show it. A person holder is masked; an
        // organisation's name and credit code are public registers.
        if let Some(c) = view.verification.claims.as_mut() {
            c.fields = view.verification.visible_fields.clone();
            if c.holder.kind == HolderKind::Person {
                c.holder.name = mask_name(&c.holder.name);
                c.holder.id = mask_id(&c.holder.id);
            }
        }
        if let Some(l) = view.verification.licence.as_mut() {
            if l.holder_kind == HolderKind::Person {
                l.holder_id = mask_id(&l.holder_id);
            }
            for e in &mut l.history {
                e.note.clear();
            }
        }
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_the_edges() {
        assert_eq!(mask_name("张三丰"), "张*");
        assert_eq!(mask_name("李四"), "李*");
        assert_eq!(mask_id("35020319900101123X"), "3********X");
        assert_eq!(mask_id("1"), "********");
    }
}
