use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};

/// Class names by index; a class without a name shows as its number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Names(BTreeMap<usize, String>);

impl Names {
    fn checked(names: BTreeMap<usize, String>) -> anyhow::Result<Self> {
        if let Some(&id) = names
            .keys()
            .next_back()
            .filter(|&&id| id >= rtdetr::MAX_CLASSES)
        {
            bail!(
                "class id {id}: at most {} classes are supported",
                rtdetr::MAX_CLASSES
            );
        }
        Ok(Self(names))
    }

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
        Self::checked(names)
    }

    /// The `names:` of an ultralytics data.yaml (a mapping `0: person` or a list), or a YAML
    /// list or mapping on its own, parsed as YAML.
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        use serde_yaml_ng::Value;
        let doc: Value = rtdetr::data::parse_yaml(text)
            .map_err(anyhow::Error::msg)
            .context("not YAML")?;
        let table = match &doc {
            Value::Mapping(m) => m.get("names").unwrap_or(&doc),
            _ => &doc,
        };
        let name = |v: &Value| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => bail!("class names must be strings, found {v:?}"),
        };
        let mut names = BTreeMap::new();
        match table {
            Value::Sequence(list) => {
                for (i, v) in list.iter().enumerate() {
                    names.insert(i, name(v)?);
                }
            }
            Value::Mapping(map) if table != &doc || !map.contains_key("train") => {
                for (k, v) in map {
                    let id = k
                        .as_u64()
                        .and_then(|id| usize::try_from(id).ok())
                        .with_context(|| format!("class key {k:?} is not a class id"))?;
                    names.insert(id, name(v)?);
                }
            }
            _ => bail!("no class names found (a `names:` list or mapping)"),
        }
        if names.is_empty() {
            bail!("no class names found");
        }
        Self::checked(names)
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
        // Broken YAML is an error, not a class called `x: {`.
        assert!(Names::from_yaml("names:\n  0: x: {\n").is_err());
        assert!(Names::from_yaml("names: {100000000: z}\n").is_err());
    }
}
