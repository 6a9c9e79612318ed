//! YAML parsing with bounds the parser lacks: its scanner slows superlinearly with the nesting
//! of flow collections (a 200 KB line of `[` takes minutes to refuse), so the nesting is
//! measured first, in one pass, and a deep or oversized document is refused at once.

use serde::de::DeserializeOwned;

/// The deepest nesting of `[...]`/`{...}` accepted; real configuration files use two or three.
pub const MAX_YAML_DEPTH: usize = 32;
/// The largest YAML text accepted (a names table of `MAX_CLASSES` long names fits easily).
pub const MAX_YAML_BYTES: usize = 16 << 20;

/// The deepest flow-collection nesting of `text`: brackets inside quotes, comments and plain
/// scalars (`a[1]`) do not count, only those that open a value.
pub fn flow_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut escaped = false;
    // The last character that was not a space on this line; '\n' at a line's start.
    let mut before = '\n';
    for c in text.chars() {
        if c == '\n' {
            comment = false;
            before = '\n';
            continue;
        }
        if comment {
            continue;
        }
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if q == '"' && c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
                before = c;
            }
            continue;
        }
        let opens_value = matches!(before, '\n' | ':' | '-' | ',' | '[' | '{' | '?');
        match c {
            ' ' | '\t' | '\r' => continue,
            '#' => comment = true,
            '"' | '\'' if opens_value => quote = Some(c),
            '[' | '{' if opens_value => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        before = c;
    }
    deepest
}

/// Parses `text` as YAML into `T`, refusing a document over [`MAX_YAML_BYTES`] or nested deeper
/// than [`MAX_YAML_DEPTH`] before the parser sees it.
pub fn parse_yaml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    if text.len() > MAX_YAML_BYTES {
        return Err(format!(
            "{} bytes of YAML, at most {MAX_YAML_BYTES} are read",
            text.len()
        ));
    }
    let depth = flow_depth(text);
    if depth > MAX_YAML_DEPTH {
        return Err(format!(
            "collections nested {depth} deep, at most {MAX_YAML_DEPTH} are read"
        ));
    }
    serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_only_brackets_that_open_values() {
        assert_eq!(flow_depth("names: [a, b]\n"), 1);
        assert_eq!(flow_depth("a: {b: [c, {d: e}]}\n"), 3);
        assert_eq!(flow_depth("- [[x]]\n"), 2);
        assert_eq!(flow_depth("names:\n  0: a[1\n  1: b{2\n  2: c[3\n"), 0);
        assert_eq!(flow_depth("a: '[[[['\nb: \"{{\\\"[[\"\n# [[[[\n"), 0);
        assert_eq!(flow_depth("a: it's [x]\n"), 0);
        assert_eq!(flow_depth(&format!("names: {}", "[".repeat(1000))), 1000);
    }

    #[test]
    fn deep_or_huge_documents_are_refused_at_once() {
        let start = std::time::Instant::now();
        let deep = format!("names: {}\n", "[".repeat(200_000));
        assert!(parse_yaml::<serde_yaml_ng::Value>(&deep)
            .unwrap_err()
            .contains("nested 200000 deep"));
        let deep = format!("names: {}\n", "{a: ".repeat(50_000));
        assert!(parse_yaml::<serde_yaml_ng::Value>(&deep).is_err());
        assert!(start.elapsed().as_secs() < 5);
        let ok: serde_yaml_ng::Value = parse_yaml("names: [a, b]\n").unwrap();
        assert_eq!(ok["names"][1].as_str(), Some("b"));
    }
}
