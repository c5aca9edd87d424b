//! Templates: versioned licence types, draft → published → deprecated.
//!
//! Keys: `Templates` holds `type code (21 bytes) ‖ version (u32 BE)`, so one type's versions
//! are adjacent and ordered, and a department's types share its credit code as prefix.
//! `TemplateHeads` holds the latest version number of each type, read by the sequenced
//! operations that create versions.

use certseal_core::template::FieldType;
use certseal_core::{
    Actor, DepartmentStatus, Role, Template, TemplateCategory, TemplateContent, TemplateStatus,
    Timestamp, TypeCode,
};
use certseal_log::Extra;
use certseal_store::{Direction, Table};
use certseal_verify::document::MAX_DOCUMENT_BYTES;

use crate::audit::{RegTxn, append};
use crate::codec::{decode, encode};
use crate::departments::{load_department, parse_credit_code};
use crate::paging::scan_page;
use crate::{PageRequest, Paged, Registry, RegistryError};

/// Which version of a licence type to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateSelector {
    /// The highest version that is published (not draft, not deprecated).
    LatestPublished,
    /// One version.
    Version(u32),
}

/// What to list; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct TemplateFilter {
    /// Only this category.
    pub category: Option<TemplateCategory>,
    /// Only this status.
    pub status: Option<TemplateStatus>,
    /// Only types defined by this department (credit code).
    pub defining_department: Option<String>,
}

/// Most stored versions one list call reads before it returns a short page.
const MAX_SCANNED_PER_LIST: usize = 10_000;

/// The latest published version of each type read so far; `generation` counts changes, so
/// a read that raced a change is not kept.
#[derive(Debug, Default)]
pub(crate) struct PublishedTemplates {
    generation: u64,
    templates: std::collections::HashMap<TypeCode, Template>,
    /// Public field names by (type, version), for versions past draft.
    public_fields: std::collections::HashMap<
        (TypeCode, u32),
        std::sync::Arc<std::collections::BTreeSet<String>>,
    >,
}

/// Refuses to publish a version whose largest licence would be larger than verification
/// reads: every licence issued from a published version then verifies.
fn check_verifiable(t: &Template) -> Result<(), RegistryError> {
    let document = crate::licences::largest_licence(t)?;
    if document <= MAX_DOCUMENT_BYTES {
        return Ok(());
    }
    let text: u32 = t
        .content
        .fields
        .iter()
        .filter(|f| f.field_type == FieldType::String)
        .map(|f| f.max_length)
        .sum();
    Err(RegistryError::FailedPrecondition(format!(
        "template {} version {} cannot be published: its largest licence (every field at its \
         longest, text at 4 bytes a character) would be a signed document of {document} bytes; \
         verification reads at most {MAX_DOCUMENT_BYTES}. Lower the max_length of its text \
         fields ({text} characters in all)",
        t.type_code, t.version,
    )))
}

fn template_key(type_code: &TypeCode, version: u32) -> Vec<u8> {
    [type_code.as_str().as_bytes(), &version.to_be_bytes()].concat()
}

fn parse_type_code(value: &str) -> Result<TypeCode, RegistryError> {
    value
        .parse()
        .map_err(|e: certseal_core::IdError| RegistryError::invalid("type_code", e.0))
}

fn check_version(version: u32) -> Result<(), RegistryError> {
    if version == 0 {
        Err(RegistryError::invalid("version", "versions start at 1"))
    } else {
        Ok(())
    }
}

fn load_template(
    txn: &RegTxn<'_>,
    type_code: &TypeCode,
    version: u32,
) -> Result<Option<Template>, RegistryError> {
    txn.get(Table::Templates, &template_key(type_code, version))?
        .map(|b| decode("template", &b))
        .transpose()
}

fn latest_version(txn: &RegTxn<'_>, type_code: &TypeCode) -> Result<u32, RegistryError> {
    match txn.get(Table::TemplateHeads, type_code.as_str().as_bytes())? {
        None => Ok(0),
        Some(b) => Ok(u32::from_be_bytes(b.as_slice().try_into().map_err(
            |_| RegistryError::Corrupt(format!("template head of {type_code}")),
        )?)),
    }
}

fn require_active_definer(txn: &RegTxn<'_>, type_code: &TypeCode) -> Result<(), RegistryError> {
    let code = type_code.defining_department();
    let dept = load_department(txn, &code)?.ok_or_else(|| {
        RegistryError::NotFound(format!(
            "department {code}, which defines type {type_code}, is not registered"
        ))
    })?;
    if dept.status == DepartmentStatus::Deactivated {
        return Err(RegistryError::FailedPrecondition(format!(
            "department {code}, which defines type {type_code}, is deactivated"
        )));
    }
    Ok(())
}

impl Registry {
    /// Forgets the published templates held in memory (a follower whose cluster changed them).
    pub(crate) fn clear_published_templates(&self) {
        let mut cache = self.published.lock().unwrap_or_else(|e| e.into_inner());
        let generation = cache.generation + 1;
        *cache = PublishedTemplates {
            generation,
            ..PublishedTemplates::default()
        };
    }

    /// Creates a draft. `base_version` 0 starts a new licence type (`AlreadyExists` if the
    /// type has versions); N creates version N+1 and must name the type's latest version,
    /// which must not itself be a draft. Needs the admin role.
    pub async fn create_template_draft(
        &self,
        actor: &Actor,
        type_code: &str,
        base_version: u32,
        content: TemplateContent,
    ) -> Result<Template, RegistryError> {
        self.authorize(actor, Role::Admin, "creating a template")?;
        let (type_code, content) = check_template_input(type_code, content)?;
        let actor = actor.clone();
        self.sequencer
            .submit(move |txn| {
                require_active_definer(txn, &type_code)?;
                let latest = latest_version(txn, &type_code)?;
                if base_version == 0 && latest > 0 {
                    return Err(RegistryError::AlreadyExists(format!(
                        "licence type {type_code} exists (latest version {latest}); give base_version {latest} to create version {}",
                        latest + 1
                    )));
                }
                if base_version != latest {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "base_version is {base_version} but the latest version of {type_code} is {latest}"
                    )));
                }
                if latest > 0 {
                    let prev = load_template(txn, &type_code, latest)?.ok_or_else(|| {
                        RegistryError::Corrupt(format!("template {type_code} v{latest} missing"))
                    })?;
                    if prev.status == TemplateStatus::Draft {
                        return Err(RegistryError::FailedPrecondition(format!(
                            "version {latest} of {type_code} is still a draft; update or publish it first"
                        )));
                    }
                }
                let now = Timestamp::now();
                let template = Template {
                    type_code,
                    version: latest + 1,
                    content,
                    status: TemplateStatus::Draft,
                    created_at: now,
                    created_by: actor.clone(),
                    updated_at: now,
                    updated_by: actor,
                    published_at: None,
                };
                let record = encode(&template);
                txn.put(
                    Table::Templates,
                    template_key(&template.type_code, template.version),
                    record.clone(),
                );
                txn.put(
                    Table::TemplateHeads,
                    template.type_code.as_str().as_bytes(),
                    template.version.to_be_bytes().to_vec(),
                );
                append(
                    txn,
                    &template.created_by,
                    "template.draft_created",
                    template.type_code.as_str(),
                    &record,
                    version_field(template.version),
                );
                Ok(template)
            })
            .await
    }

    /// Replaces the content of a draft. Needs the admin role.
    pub async fn update_template_draft(
        &self,
        actor: &Actor,
        type_code: &str,
        version: u32,
        content: TemplateContent,
    ) -> Result<Template, RegistryError> {
        self.authorize(actor, Role::Admin, "updating a template")?;
        check_version(version)?;
        let (type_code, content) = check_template_input(type_code, content)?;
        self.change_template(
            actor,
            type_code,
            version,
            "template.draft_updated",
            move |t| {
                if t.status != TemplateStatus::Draft {
                    return Err(immutable(t));
                }
                t.content = content;
                Ok(())
            },
        )
        .await
    }

    /// Publishes a draft: from now on it is immutable and licences can be issued from it.
    pub async fn publish_template(
        &self,
        actor: &Actor,
        type_code: &str,
        version: u32,
    ) -> Result<Template, RegistryError> {
        self.transition(
            actor,
            type_code,
            version,
            TemplateStatus::Draft,
            TemplateStatus::Published,
        )
        .await
    }

    /// Deprecates a published version: no new licences from it; issued ones are unaffected.
    pub async fn deprecate_template(
        &self,
        actor: &Actor,
        type_code: &str,
        version: u32,
    ) -> Result<Template, RegistryError> {
        self.transition(
            actor,
            type_code,
            version,
            TemplateStatus::Published,
            TemplateStatus::Deprecated,
        )
        .await
    }

    /// Moves one version along its lifecycle, from `from` to `to`. Needs the admin role.
    async fn transition(
        &self,
        actor: &Actor,
        type_code: &str,
        version: u32,
        from: TemplateStatus,
        to: TemplateStatus,
    ) -> Result<Template, RegistryError> {
        self.authorize(actor, Role::Admin, "changing a template's status")?;
        check_version(version)?;
        let type_code = parse_type_code(type_code)?;
        let kind = match to {
            TemplateStatus::Published => "template.published",
            TemplateStatus::Deprecated => "template.deprecated",
            TemplateStatus::Draft => "template.draft_updated",
        };
        self.change_template(actor, type_code, version, kind, move |t| {
            if t.status != from {
                return Err(RegistryError::FailedPrecondition(format!(
                    "template {} version {} is {}, only a {} template can be {}",
                    t.type_code,
                    t.version,
                    t.status.as_str(),
                    from.as_str(),
                    to.as_str()
                )));
            }
            if to == TemplateStatus::Published {
                check_verifiable(t)?;
            }
            t.status = to;
            if to == TemplateStatus::Published {
                t.published_at = Some(Timestamp::now());
            }
            Ok(())
        })
        .await
    }

    async fn change_template(
        &self,
        actor: &Actor,
        type_code: TypeCode,
        version: u32,
        kind: &'static str,
        change: impl FnOnce(&mut Template) -> Result<(), RegistryError> + Send + 'static,
    ) -> Result<Template, RegistryError> {
        let actor = actor.clone();
        let result = self
            .sequencer
            .submit(move |txn| {
                let mut t = load_template(txn, &type_code, version)?.ok_or_else(|| {
                    RegistryError::NotFound(format!("template {type_code} version {version}"))
                })?;
                change(&mut t)?;
                require_active_definer(txn, &type_code)?;
                t.updated_at = Timestamp::now();
                t.updated_by = actor.clone();
                let record = encode(&t);
                txn.put(
                    Table::Templates,
                    template_key(&type_code, version),
                    record.clone(),
                );
                append(
                    txn,
                    &actor,
                    kind,
                    type_code.as_str(),
                    &record,
                    version_field(version),
                );
                Ok(t)
            })
            .await;
        // A publication or deprecation changes which version is the latest published.
        self.forget_published_templates();
        result
    }

    /// Reads one version of a licence type, or its latest published version.
    pub fn get_template(
        &self,
        actor: &Actor,
        type_code: &str,
        selector: TemplateSelector,
    ) -> Result<Template, RegistryError> {
        self.authorize_held(actor, "reading templates")?;
        self.read_template(&parse_type_code(type_code)?, selector)
    }

    pub(crate) fn read_template(
        &self,
        type_code: &TypeCode,
        selector: TemplateSelector,
    ) -> Result<Template, RegistryError> {
        match selector {
            TemplateSelector::Version(v) => {
                check_version(v)?;
                self.store
                    .get(Table::Templates, &template_key(type_code, v))?
                    .map(|b| decode("template", &b))
                    .transpose()?
                    .ok_or_else(|| {
                        RegistryError::NotFound(format!("template {type_code} version {v}"))
                    })
            }
            TemplateSelector::LatestPublished => {
                let generation = {
                    let cache = self.published.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(t) = cache.templates.get(type_code) {
                        return Ok(t.clone());
                    }
                    cache.generation
                };
                let t = self.scan_latest_published(type_code)?;
                let mut cache = self.published.lock().unwrap_or_else(|e| e.into_inner());
                // Kept only if no template changed meanwhile: a stale read is never cached.
                if cache.generation == generation {
                    if cache.templates.len() >= 4096 {
                        cache.templates.clear();
                    }
                    cache.templates.insert(type_code.clone(), t.clone());
                }
                Ok(t)
            }
        }
    }

    /// The public fields of a version that is not a draft; `None` for a draft or an unknown
    /// version. Kept in memory: a version's fields never change once it is published.
    pub(crate) fn public_fields(
        &self,
        type_code: &TypeCode,
        version: u32,
    ) -> Option<std::sync::Arc<std::collections::BTreeSet<String>>> {
        let key = (type_code.clone(), version);
        let mut cache = self.published.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = cache.public_fields.get(&key) {
            return Some(f.clone());
        }
        drop(cache);
        let t = self
            .read_template(type_code, TemplateSelector::Version(version))
            .ok()
            .filter(|t| t.status != TemplateStatus::Draft)?;
        let fields: std::sync::Arc<std::collections::BTreeSet<String>> = t
            .content
            .fields
            .iter()
            .filter(|f| f.visibility == certseal_core::Visibility::Public)
            .map(|f| f.name.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into();
        cache = self.published.lock().unwrap_or_else(|e| e.into_inner());
        if cache.public_fields.len() >= 4096 {
            cache.public_fields.clear();
        }
        cache.public_fields.insert(key, fields.clone());
        Some(fields)
    }

    pub(crate) fn forget_published_templates(&self) {
        let mut cache = self.published.lock().unwrap_or_else(|e| e.into_inner());
        cache.generation += 1;
        cache.templates.clear();
    }

    fn scan_latest_published(&self, type_code: &TypeCode) -> Result<Template, RegistryError> {
        let snap = self.store.snapshot();
        let mut after = None;
        loop {
            let page = snap.scan(
                Table::Templates,
                type_code.as_str().as_bytes(),
                after.as_deref(),
                16,
                Direction::Reverse,
            )?;
            for (_, v) in &page.items {
                let t: Template = decode("template", v)?;
                if t.status == TemplateStatus::Published {
                    return Ok(t);
                }
            }
            match (page.more, page.items.last()) {
                (true, Some((k, _))) => after = Some(k.clone()),
                _ => break,
            }
        }
        Err(RegistryError::NotFound(format!(
            "no published version of template {type_code}"
        )))
    }

    /// Lists template versions in type-code and version order.
    pub fn list_templates(
        &self,
        actor: &Actor,
        filter: &TemplateFilter,
        page: &PageRequest,
    ) -> Result<Paged<Template>, RegistryError> {
        self.authorize_held(actor, "reading templates")?;
        let prefix = match &filter.defining_department {
            Some(code) => parse_credit_code("defining_department", code)?
                .as_str()
                .as_bytes()
                .to_vec(),
            None => Vec::new(),
        };
        let snap = self.store.snapshot();
        scan_page(
            &self.page_tokens,
            snap.as_ref(),
            Table::Templates,
            &prefix,
            Direction::Forward,
            page,
            MAX_SCANNED_PER_LIST,
            |_, v| {
                let t: Template = decode("template", v)?;
                Ok((filter.category.is_none_or(|c| c == t.content.category)
                    && filter.status.is_none_or(|s| s == t.status))
                .then_some(t))
            },
        )
    }
}

fn version_field(version: u32) -> std::collections::BTreeMap<String, Extra> {
    std::collections::BTreeMap::from([("version".to_owned(), Extra::Uint(version.into()))])
}

fn immutable(t: &Template) -> RegistryError {
    RegistryError::FailedPrecondition(format!(
        "template {} version {} is {} and cannot change; create a new version",
        t.type_code,
        t.version,
        t.status.as_str()
    ))
}

/// Checks the type code and the content together, so the caller hears every problem at once.
fn check_template_input(
    type_code: &str,
    content: TemplateContent,
) -> Result<(TypeCode, TemplateContent), RegistryError> {
    let code = parse_type_code(type_code);
    // The core names fields relative to the content; the request nests them under `content`.
    let content = content
        .validate()
        .map_err(|e| match RegistryError::from(e) {
            RegistryError::InvalidArgument(v) => RegistryError::InvalidArgument(
                v.into_iter()
                    .map(|mut f| {
                        f.field = format!("content.{}", f.field);
                        f
                    })
                    .collect(),
            ),
            other => other,
        });
    match (code, content) {
        (Ok(c), Ok(t)) => Ok((c, t)),
        (Err(a), Err(b)) => {
            let mut v = Vec::new();
            for e in [a, b] {
                if let RegistryError::InvalidArgument(x) = e {
                    v.extend(x);
                }
            }
            Err(RegistryError::InvalidArgument(v))
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Most licence types one catalogue lists.
pub const MAX_CATALOGUE_TYPES: usize = 10_000;

/// One licence type of the catalogue: its latest published version and who defines it.
#[derive(Debug, Clone)]
pub struct CatalogueEntry {
    /// The latest published version.
    pub template: Template,
    /// The defining department's registered name.
    pub authority_name: Option<String>,
}

impl Registry {
    /// The catalogue (GB/T 36902's 目录): every licence type with a published version, in
    /// type-code order, each at its latest published version. Any caller may read it.
    pub fn catalogue(&self, actor: &Actor) -> Result<Vec<CatalogueEntry>, RegistryError> {
        self.authorize_held(actor, "reading the catalogue")?;
        let snap = self.store.snapshot();
        let mut heads = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = snap.scan(
                Table::TemplateHeads,
                b"",
                after.as_deref(),
                1000,
                Direction::Forward,
            )?;
            after = page.items.last().map(|(k, _)| k.clone());
            heads.extend(page.items.into_iter().map(|(k, _)| k));
            if !page.more {
                break;
            }
        }
        let stamp = self.records.stamp();
        let mut out = Vec::new();
        for k in heads {
            let type_code: TypeCode = String::from_utf8_lossy(&k)
                .parse()
                .map_err(|_| RegistryError::Corrupt("template head key".into()))?;
            let template = match self.read_template(&type_code, TemplateSelector::LatestPublished) {
                Ok(t) => t,
                Err(RegistryError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let authority_name = self
                .records
                .department(self.store.as_ref(), &stamp, &template.defining_department())?
                .map(|d| d.name.clone());
            out.push(CatalogueEntry {
                template,
                authority_name,
            });
            if out.len() > MAX_CATALOGUE_TYPES {
                return Err(RegistryError::FailedPrecondition(format!(
                    "the registry defines more than {MAX_CATALOGUE_TYPES} published licence types: too many for one catalogue"
                )));
            }
        }
        Ok(out)
    }
}
