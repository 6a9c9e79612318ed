//! safetensors headers are JSON objects read into a map, where a key written twice silently
//! keeps its last value: a file could show one tensor to a viewer and load another. Such a header
//! is refused.

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};

struct UniqueKeys;

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            if !seen.insert(key.clone()) {
                return Err(A::Error::custom(format!("{key:?} is declared twice")));
            }
        }
        Ok(())
    }
}

/// Refuses a safetensors buffer whose header names a tensor (or `__metadata__`) twice. The
/// header length must already have been checked (`SafeTensors::read_metadata` does).
pub fn check_unique_keys(bytes: &[u8]) -> Result<(), String> {
    let len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
        .ok_or("shorter than its 8-byte header length")?;
    let header = bytes
        .get(8..8usize.saturating_add(len))
        .ok_or("header length exceeds the file")?;
    serde_json::Deserializer::from_slice(header)
        .deserialize_map(UniqueKeys)
        .map_err(|e| format!("header: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(header: &str) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes
    }

    #[test]
    fn a_key_written_twice_is_refused() {
        let t = r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
        assert!(check_unique_keys(&buffer(&format!(r#"{{"a":{t},"b":{t}}}"#))).is_ok());
        let twice = check_unique_keys(&buffer(&format!(r#"{{"a":{t},"a":{t}}}"#)));
        assert!(twice.unwrap_err().contains("\"a\" is declared twice"));
        assert!(check_unique_keys(&buffer("[1]")).is_err());
        assert!(check_unique_keys(&[1, 0]).is_err());
    }
}
