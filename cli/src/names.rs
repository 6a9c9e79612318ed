use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};

/// Class names by index; a class without a name shows as its number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Names(BTreeMap<usize, String>);

impl Names {
    /// One past the highest named class id (0 when none is named).
    pub fn len(&self) -> usize {
        self.0.keys().next_back().map_or(0, |&k| k + 1)
    }

    /// The name of class `id`.
    pub fn get(&self, id: usize) -> String {
        self.0.get(&id).cloned().unwrap_or_else(|| id.to_string())
    }

    /// From JSON: a list of names or an object `{"0": "person", ...}`.
    pub fn from_json(value: &serde_json::Value) -> anyhow::Result<Self> {
        let mut names = BTreeMap::new();
        match value {
            serde_json::Value::Array(list) => {
                for (i, v) in list.iter().enumerate() {
                    names.insert(
                        i,
                        v.as_str()
                            .context("class names must be strings")?
                            .to_string(),
                    );
                }
            }
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let id = k
                        .parse()
                        .with_context(|| format!("class key {k:?} is not a number"))?;
                    names.insert(
                        id,
                        v.as_str()
                            .context("class names must be strings")?
                            .to_string(),
                    );
                }
            }
            _ => bail!("class names must be a list or an object"),
        }
        Ok(Self(names))
    }

    /// The `names:` of an ultralytics data.yaml (a mapping `0: person` or a list), or a YAML list.
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        let unquote = |s: &str| s.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
        let lines = text.lines().map(|l| l.split(" #").next().unwrap_or(""));
        let mut in_names = !text.lines().any(|l| l.trim_start().starts_with("names:"));
        let mut names = BTreeMap::new();
        for line in lines {
            if let Some(rest) = line.trim_start().strip_prefix("names:") {
                in_names = true;
                let rest = rest.trim();
                if let Some(inline) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                    for (i, n) in inline.split(',').enumerate() {
                        names.insert(i, unquote(n));
                    }
                    break;
                }
                continue;
            }
            if !in_names || line.trim().is_empty() {
                continue;
            }
            if !line.starts_with([' ', '\t', '-']) && !names.is_empty() {
                break;
            }
            let item = line.trim();
            if let Some(name) = item.strip_prefix('-') {
                names.insert(names.len(), unquote(name));
            } else if let Some((k, v)) = item.split_once(':') {
                if let Ok(id) = k.trim().parse() {
                    names.insert(id, unquote(v));
                } else if !names.is_empty() {
                    break;
                }
            }
        }
        if names.is_empty() {
            bail!("no class names found");
        }
        Ok(Self(names))
    }

    /// One name per line.
    pub fn from_lines(text: &str) -> Self {
        Self(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .enumerate()
                .collect(),
        )
    }

    /// Reads `--names FILE` (.yaml/.yml, .json, or one name per line).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let names = match ext.as_str() {
            "json" => serde_json::from_str(&text)
                .map_err(anyhow::Error::from)
                .and_then(|v| Self::from_json(&v)),
            "yaml" | "yml" => Self::from_yaml(&text),
            _ => Ok(Self::from_lines(&text)),
        };
        names.with_context(|| format!("reading class names from {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let yaml = "path: ../data\ntrain: images/train\nnames:\n  0: person\n  1: 'traffic light'\nnc: 2\n";
        let names = Names::from_yaml(yaml).unwrap();
        assert_eq!(
            (names.get(0), names.get(1), names.get(5)),
            ("person".into(), "traffic light".into(), "5".into())
        );
        assert_eq!(
            Names::from_yaml("names:\n  - cat\n  - dog\n")
                .unwrap()
                .get(1),
            "dog"
        );
        assert_eq!(
            Names::from_yaml("names: [cat, 'dog']\n").unwrap().get(1),
            "dog"
        );
        assert_eq!(Names::from_yaml("- a\n- b\n").unwrap().get(1), "b");
        let json: serde_json::Value = serde_json::from_str(r#"{"0": "a", "2": "c"}"#).unwrap();
        assert_eq!(Names::from_json(&json).unwrap().get(2), "c");
        assert_eq!(Names::from_lines("x\n\ny\n").get(1), "y");
        assert!(Names::from_yaml("train: a\n").is_err());
    }
}
