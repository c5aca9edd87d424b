//! Departments: register, read, list, rename, deactivate, reactivate.

use certseal_core::department::MAX_DEPARTMENT_NAME;
use certseal_core::error::check_name;
use certseal_core::{Actor, CreditCode, Department, DepartmentStatus, RegionCode, Role, Timestamp};
use certseal_store::{Direction, Table};

use crate::audit::{RegTxn, append};
use crate::cache::put_cached;
use crate::codec::{decode, encode};
use crate::paging::token_for;
use crate::{PageRequest, Paged, Registry, RegistryError};

/// Parses a credit code given in request field `field`.
pub(crate) fn parse_credit_code(field: &str, value: &str) -> Result<CreditCode, RegistryError> {
    value
        .parse()
        .map_err(|e: certseal_core::IdError| RegistryError::invalid(field, e.0))
}

pub(crate) fn load_department(
    txn: &RegTxn<'_>,
    code: &CreditCode,
) -> Result<Option<Department>, RegistryError> {
    txn.get(Table::Departments, code.as_str().as_bytes())?
        .map(|b| decode("department", &b))
        .transpose()
}

impl Registry {
    /// Registers a department. Needs the admin role.
    pub async fn register_department(
        &self,
        actor: &Actor,
        credit_code: &str,
        name: &str,
        region_code: &str,
    ) -> Result<Department, RegistryError> {
        self.authorize(actor, Role::Admin, "registering a department")?;
        let mut violations = Vec::new();
        let code = parse_credit_code("credit_code", credit_code)
            .map_err(|e| push(&mut violations, e))
            .ok();
        let name = check_name("name", name, MAX_DEPARTMENT_NAME)
            .map_err(|v| violations.push(v))
            .ok();
        let region = region_code
            .parse::<RegionCode>()
            .map_err(|e| violations.push(certseal_core::FieldViolation::new("region_code", e.0)))
            .ok();
        let (Some(code), Some(name), Some(region)) = (code, name, region) else {
            return Err(RegistryError::InvalidArgument(violations));
        };
        let now = Timestamp::now();
        let dept = Department {
            credit_code: code,
            name,
            region,
            status: DepartmentStatus::Active,
            created_at: now,
            created_by: actor.clone(),
            updated_at: now,
            updated_by: actor.clone(),
        };
        self.sequencer
            .submit(move |txn| {
                let key = dept.credit_code.as_str().as_bytes();
                if txn.get(Table::Departments, key)?.is_some() {
                    return Err(RegistryError::AlreadyExists(format!(
                        "department {} is registered",
                        dept.credit_code
                    )));
                }
                let record = encode(&dept);
                put_cached(txn, Table::Departments, key, record.clone());
                append(
                    txn,
                    &dept.created_by,
                    "department.registered",
                    dept.credit_code.as_str(),
                    &record,
                    Default::default(),
                );
                Ok(dept)
            })
            .await
    }

    /// Reads one department.
    pub fn get_department(
        &self,
        actor: &Actor,
        credit_code: &str,
    ) -> Result<Department, RegistryError> {
        self.authorize_held(actor, "reading departments")?;
        let code = parse_credit_code("credit_code", credit_code)?;
        self.store
            .get(Table::Departments, code.as_str().as_bytes())?
            .map(|b| decode("department", &b))
            .transpose()?
            .ok_or_else(|| RegistryError::NotFound(format!("department {code}")))
    }

    /// Lists departments in credit-code order.
    pub fn list_departments(
        &self,
        actor: &Actor,
        page: &PageRequest,
    ) -> Result<Paged<Department>, RegistryError> {
        self.authorize_held(actor, "reading departments")?;
        let after = page.after(&self.page_tokens, Table::Departments, b"")?;
        let scanned = self.store.scan(
            Table::Departments,
            b"",
            after.as_deref(),
            page.limit(),
            Direction::Forward,
        )?;
        let next_token = match (scanned.more, scanned.items.last()) {
            (true, Some((k, _))) => token_for(&self.page_tokens, Table::Departments, b"", k),
            _ => String::new(),
        };
        let items = scanned
            .items
            .iter()
            .map(|(_, v)| decode("department", v))
            .collect::<Result<_, _>>()?;
        Ok(Paged { items, next_token })
    }

    /// Renames a department. Needs the admin role; a deactivated department keeps its name.
    pub async fn update_department_name(
        &self,
        actor: &Actor,
        credit_code: &str,
        name: &str,
    ) -> Result<Department, RegistryError> {
        self.authorize(actor, Role::Admin, "renaming a department")?;
        let code = parse_credit_code("credit_code", credit_code)?;
        let name = check_name("name", name, MAX_DEPARTMENT_NAME)
            .map_err(|v| RegistryError::InvalidArgument(vec![v]))?;
        self.change_department(actor, code, "department.renamed", move |d| {
            if d.status == DepartmentStatus::Deactivated {
                return Err(RegistryError::FailedPrecondition(format!(
                    "department {} is deactivated",
                    d.credit_code
                )));
            }
            d.name = name;
            Ok(())
        })
        .await
    }

    /// Deactivates a department. Needs the admin role. Its records stay; it can no longer
    /// define templates.
    pub async fn deactivate_department(
        &self,
        actor: &Actor,
        credit_code: &str,
    ) -> Result<Department, RegistryError> {
        self.authorize(actor, Role::Admin, "deactivating a department")?;
        let code = parse_credit_code("credit_code", credit_code)?;
        self.change_department(actor, code, "department.deactivated", move |d| {
            if d.status == DepartmentStatus::Deactivated {
                return Err(RegistryError::FailedPrecondition(format!(
                    "department {} is already deactivated",
                    d.credit_code
                )));
            }
            d.status = DepartmentStatus::Deactivated;
            Ok(())
        })
        .await
    }

    /// Reactivates a deactivated department: its certificates and policy apply again. Needs
    /// the admin role.
    pub async fn reactivate_department(
        &self,
        actor: &Actor,
        credit_code: &str,
    ) -> Result<Department, RegistryError> {
        self.authorize(actor, Role::Admin, "reactivating a department")?;
        let code = parse_credit_code("credit_code", credit_code)?;
        self.change_department(actor, code, "department.reactivated", move |d| {
            if d.status == DepartmentStatus::Active {
                return Err(RegistryError::FailedPrecondition(format!(
                    "department {} is active",
                    d.credit_code
                )));
            }
            d.status = DepartmentStatus::Active;
            Ok(())
        })
        .await
    }

    /// Reads, changes and writes one department, logging the change as `kind`.
    async fn change_department(
        &self,
        actor: &Actor,
        code: CreditCode,
        kind: &'static str,
        change: impl FnOnce(&mut Department) -> Result<(), RegistryError> + Send + 'static,
    ) -> Result<Department, RegistryError> {
        let actor = actor.clone();
        self.sequencer
            .submit(move |txn| {
                let mut d = load_department(txn, &code)?
                    .ok_or_else(|| RegistryError::NotFound(format!("department {code}")))?;
                change(&mut d)?;
                d.updated_at = Timestamp::now();
                d.updated_by = actor.clone();
                let record = encode(&d);
                put_cached(
                    txn,
                    Table::Departments,
                    code.as_str().as_bytes(),
                    record.clone(),
                );
                append(
                    txn,
                    &actor,
                    kind,
                    code.as_str(),
                    &record,
                    Default::default(),
                );
                Ok(d)
            })
            .await
    }
}

fn push(violations: &mut Vec<certseal_core::FieldViolation>, e: RegistryError) {
    if let RegistryError::InvalidArgument(v) = e {
        violations.extend(v);
    }
}
