//! Small helpers the client subcommands share: files and time arguments.

use std::path::Path;

use anyhow::Context;

/// Reads a file, naming it in the error.
pub(super) fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes a file, naming it in the error.
pub(super) fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// An optional RFC 3339 time argument.
pub(super) fn time_arg(
    flag: &str,
    value: Option<&str>,
) -> anyhow::Result<Option<prost_types::Timestamp>> {
    value
        .map(|v| {
            v.parse::<prost_types::Timestamp>().map_err(|_| {
                anyhow::anyhow!("{flag} '{v}': an RFC 3339 time such as 2026-11-27T09:00:00Z")
            })
        })
        .transpose()
}
