//! What happens to one source key, and the shared helpers of the name maps.

use std::collections::BTreeMap;

use crate::{Error, Result};

/// The fate of one source tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rename {
    /// Kept under this key (relative to the backbone or model root).
    To(String),
    /// Dropped on purpose (classifier head, `num_batches_tracked`, optimizer state, ...).
    Ignore,
}

/// Maps `(stage, index in stage)` pairs to the flat block index of our `blocks.N`.
pub fn flat_blocks(
    pairs: impl IntoIterator<Item = (usize, usize)>,
) -> BTreeMap<(usize, usize), usize> {
    let mut pairs: Vec<_> = pairs.into_iter().collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs.into_iter().enumerate().map(|(i, p)| (p, i)).collect()
}

/// Two integers following `head` in a dotted key (`blocks.2.3.conv` → `(2, 3, "conv")`).
pub fn two_indices<'a>(key: &'a str, head: &str) -> Option<(usize, usize, &'a str)> {
    let rest = key.strip_prefix(head)?;
    let mut it = rest.splitn(3, '.');
    let a = it.next()?.parse().ok()?;
    let b = it.next()?.parse().ok()?;
    Some((a, b, it.next().unwrap_or("")))
}

/// The first `(from, to)` row whose `from` prefixes `rest`, applied.
pub fn by_table(rest: &str, table: &[(&str, &str)]) -> Option<String> {
    table
        .iter()
        .find_map(|(from, to)| Some(format!("{to}{}", rest.strip_prefix(from)?)))
}

/// Errors listing the keys no rule matched (or `Ok`).
pub fn unknown(kind: &str, keys: Vec<String>) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let shown: Vec<_> = keys.iter().take(5).cloned().collect();
    Err(Error::Mapping(format!(
        "{} key(s) match no {kind} name: {}{}",
        keys.len(),
        shown.join(", "),
        if keys.len() > 5 { ", …" } else { "" }
    )))
}
