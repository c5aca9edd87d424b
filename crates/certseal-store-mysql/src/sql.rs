//! The schema and the statements: one table of (key, value) rows per [`Table`], compared as
//! bytes, and the version row.

use certseal_store::{Direction, Page, Table};
use mysql::PooledConn;
use mysql::prelude::Queryable;

use crate::{OpenError, SCHEMA_VERSION};

/// Run on every new connection. MariaDB (`/*M!`) makes reads wait until the node has applied
/// every commit the cluster made before them (Galera's causal reads); other engines read the
/// latest commit anyway and only set a user variable.
pub(crate) const SYNC_WAIT: &str = "SET /*M! SESSION wsrep_sync_wait = 1, */ @certseal = 1";

/// A SQL statement's text grows to about this before the next statement starts.
const STATEMENT_BYTES: usize = 1 << 20;

/// The last change of one key: its table, the key, and the new value (None: deleted).
pub(crate) type Change<'a> = (Table, Vec<u8>, Option<&'a [u8]>);

pub(crate) fn table_name(t: Table) -> String {
    format!("cs_{}", t.name())
}

pub(crate) fn hex_literal(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() * 2 + 3);
    out.push_str("X'");
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out.push('\'');
}

fn lit(bytes: &[u8]) -> String {
    let mut s = String::new();
    hex_literal(&mut s, bytes);
    s
}

/// Creates what is missing: the version row first, then every table (new tables of a later
/// build are added the same way). A database of another schema version is refused.
pub(crate) fn create_schema(c: &mut PooledConn) -> Result<(), OpenError> {
    let db = |e: mysql::Error| OpenError::Database(e.to_string());
    c.query_drop(
        "CREATE TABLE IF NOT EXISTS cs_schema (
            id TINYINT NOT NULL PRIMARY KEY,
            version INT NOT NULL,
            registry_id VARCHAR(64) NOT NULL,
            created_ms BIGINT NOT NULL
        ) ENGINE=InnoDB",
    )
    .map_err(db)?;
    let found: Option<u32> = c
        .query_first("SELECT version FROM cs_schema WHERE id = 1")
        .map_err(db)?;
    match found {
        Some(v) if v != SCHEMA_VERSION => return Err(OpenError::SchemaVersion { found: v }),
        Some(_) => {}
        None => {
            // Two nodes starting together on an empty database: one row wins.
            c.query_drop(format!(
                "INSERT IGNORE INTO cs_schema (id, version, registry_id, created_ms)
                 VALUES (1, {SCHEMA_VERSION}, UUID(), {})",
                crate::lease::NOW_MS
            ))
            .map_err(db)?;
        }
    }
    c.query_drop(
        "CREATE TABLE IF NOT EXISTS cs_lease (
            id TINYINT NOT NULL PRIMARY KEY,
            epoch BIGINT NOT NULL,
            holder VARCHAR(255) NOT NULL,
            address VARCHAR(255) NOT NULL,
            expires_ms BIGINT NOT NULL,
            fence BIGINT NOT NULL
        ) ENGINE=InnoDB",
    )
    .map_err(db)?;
    c.query_drop(
        "INSERT IGNORE INTO cs_lease (id, epoch, holder, address, expires_ms, fence)
         VALUES (1, 0, '', '', 0, 0)",
    )
    .map_err(db)?;
    for t in Table::ALL {
        c.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {} (
                k VARBINARY({}) NOT NULL PRIMARY KEY,
                v LONGBLOB NOT NULL
            ) ENGINE=InnoDB",
            table_name(t),
            crate::MAX_KEY
        ))
        .map_err(db)?;
    }
    Ok(())
}

pub(crate) fn registry_id(c: &mut PooledConn) -> Result<String, mysql::Error> {
    let id: Option<String> = c.query_first("SELECT registry_id FROM cs_schema WHERE id = 1")?;
    Ok(id.unwrap_or_default())
}

pub(crate) fn get<C: Queryable>(
    c: &mut C,
    table: Table,
    key: &[u8],
) -> Result<Option<Vec<u8>>, mysql::Error> {
    c.exec_first(
        format!("SELECT v FROM {} WHERE k = ?", table_name(table)),
        (key,),
    )
}

/// The statements that read many keys at once: one `SELECT` per about [`STATEMENT_BYTES`] of
/// keys, each a `UNION ALL` of one `k IN (…)` per table, its rows tagged with the table's
/// place in `keys`' order of tables.
pub(crate) fn get_many_statements(keys: &[(Table, Vec<u8>)]) -> (Vec<Table>, Vec<String>) {
    let tables: Vec<Table> = Table::ALL
        .into_iter()
        .filter(|t| keys.iter().any(|(tt, _)| tt == t))
        .collect();
    let mut out = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    let mut size = 0;
    for (tag, &t) in tables.iter().enumerate() {
        let mut list = String::new();
        for (_, k) in keys.iter().filter(|(tt, _)| *tt == t) {
            list.push_str(if list.is_empty() { "" } else { "," });
            hex_literal(&mut list, k);
            if size + list.len() >= STATEMENT_BYTES {
                parts.push(select_in(tag, t, &std::mem::take(&mut list)));
                out.push(parts.join(" UNION ALL "));
                parts.clear();
                size = 0;
            }
        }
        if !list.is_empty() {
            size += list.len();
            parts.push(select_in(tag, t, &list));
        }
    }
    if !parts.is_empty() {
        out.push(parts.join(" UNION ALL "));
    }
    (tables, out)
}

fn select_in(tag: usize, t: Table, keys: &str) -> String {
    format!(
        "SELECT {tag}, k, v FROM {} WHERE k IN ({keys})",
        table_name(t)
    )
}

/// The first key after every key that starts with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub(crate) fn scan<C: Queryable>(
    c: &mut C,
    table: Table,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
    direction: Direction,
) -> Result<Page, mysql::Error> {
    let mut conds = vec![format!("k >= {}", lit(prefix))];
    if let Some(end) = prefix_end(prefix) {
        conds.push(format!("k < {}", lit(&end)));
    }
    let order = match direction {
        Direction::Forward => {
            if let Some(a) = after {
                conds.push(format!("k > {}", lit(a)));
            }
            "ASC"
        }
        Direction::Reverse => {
            if let Some(a) = after {
                conds.push(format!("k < {}", lit(a)));
            }
            "DESC"
        }
    };
    let q = format!(
        "SELECT k, v FROM {} WHERE {} ORDER BY k {order} LIMIT {}",
        table_name(table),
        conds.join(" AND "),
        limit.saturating_add(1)
    );
    let mut items: Vec<(Vec<u8>, Vec<u8>)> = c.query(q)?;
    let more = items.len() > limit;
    items.truncate(limit);
    Ok(Page { items, more })
}

/// The statements that apply the last change of each key: multi-row upserts and deletes per
/// table, each statement at most about [`STATEMENT_BYTES`] long.
pub(crate) fn batch_statements(changes: &[Change<'_>]) -> Vec<String> {
    let mut out = Vec::new();
    for t in Table::ALL {
        let name = table_name(t);
        let mut put = String::new();
        let mut del = String::new();
        for (_, k, v) in changes.iter().filter(|(tt, ..)| *tt == t) {
            match v {
                Some(v) => {
                    put.push_str(if put.is_empty() { "" } else { "," });
                    put.push('(');
                    hex_literal(&mut put, k);
                    put.push(',');
                    hex_literal(&mut put, v);
                    put.push(')');
                    if put.len() >= STATEMENT_BYTES {
                        out.push(upsert(&name, &std::mem::take(&mut put)));
                    }
                }
                None => {
                    del.push_str(if del.is_empty() { "" } else { "," });
                    hex_literal(&mut del, k);
                    if del.len() >= STATEMENT_BYTES {
                        out.push(delete(&name, &std::mem::take(&mut del)));
                    }
                }
            }
        }
        if !put.is_empty() {
            out.push(upsert(&name, &put));
        }
        if !del.is_empty() {
            out.push(delete(&name, &del));
        }
    }
    out
}

fn upsert(name: &str, rows: &str) -> String {
    format!("INSERT INTO {name} (k, v) VALUES {rows} ON DUPLICATE KEY UPDATE v = VALUES(v)")
}

fn delete(name: &str, keys: &str) -> String {
    format!("DELETE FROM {name} WHERE k IN ({keys})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_keys_are_read_in_one_statement_per_table_set() {
        let keys = vec![
            (Table::Licences, b"a".to_vec()),
            (Table::Meta, b"m".to_vec()),
            (Table::Licences, b"b".to_vec()),
        ];
        let (tables, statements) = get_many_statements(&keys);
        assert_eq!(statements.len(), 1);
        let licences = tables.iter().position(|t| *t == Table::Licences).unwrap();
        let meta = tables.iter().position(|t| *t == Table::Meta).unwrap();
        assert!(
            statements[0].contains(&format!(
                "SELECT {licences}, k, v FROM cs_licences WHERE k IN (X'61',X'62')"
            )),
            "{}",
            statements[0]
        );
        assert!(
            statements[0].contains(&format!(
                "UNION ALL SELECT {meta}, k, v FROM cs_meta WHERE k IN (X'6D')"
            )) || statements[0].starts_with(&format!("SELECT {meta}, k, v FROM cs_meta"))
        );
        // Past the statement bound, more statements; every key still asked once.
        let many: Vec<_> = (0..40_000u32)
            .map(|i| (Table::Licences, format!("{i:020}").into_bytes()))
            .collect();
        let (_, statements) = get_many_statements(&many);
        assert!(statements.len() > 1);
        let asked: usize = statements.iter().map(|s| s.matches("X'").count()).sum();
        assert_eq!(asked, 40_000);
        assert!(statements.iter().all(|s| s.len() < 2 * STATEMENT_BYTES));
    }

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn statements_keep_the_last_change_of_each_key_and_split_long_ones() {
        let big = vec![7u8; 300 * 1024];
        let changes: Vec<Change<'_>> = (0..8u8)
            .map(|i| (Table::Records, vec![i], Some(big.as_slice())))
            .chain([(Table::Meta, b"gone".to_vec(), None)])
            .collect();
        let stmts = batch_statements(&changes);
        // 8 values of 600 KiB of hex: a statement per two values, then the delete.
        let upserts = stmts
            .iter()
            .filter(|s| s.starts_with("INSERT INTO cs_records"));
        assert_eq!(
            upserts.count(),
            4,
            "{:?}",
            stmts.iter().map(String::len).collect::<Vec<_>>()
        );
        assert!(stmts.contains(&"DELETE FROM cs_meta WHERE k IN (X'676F6E65')".to_owned()));
        assert_eq!(stmts.len(), 5);
    }
}
