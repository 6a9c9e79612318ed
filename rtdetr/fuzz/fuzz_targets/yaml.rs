//! data.yaml parsing and its class table, bounded as `YoloDataset::from_yaml` bounds it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtdetr::data::{parse_yaml, DataYaml};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_yaml::<serde_yaml_ng::Value>(&text);
    if let Ok(yaml) = parse_yaml::<DataYaml>(&text) {
        if yaml.class_count() <= rtdetr::MAX_CLASSES {
            let _ = yaml.names();
        }
    }
});
