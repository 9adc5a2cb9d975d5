//! Which services a service depends on (`depends_on`), so updates can follow compose's order.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

/// Each service's `depends_on` targets, in short (`[db]`) or long (`{db: {condition: …}}`) form.
/// A file that does not parse gives no dependencies: the editor reports parse errors itself.
pub fn dependencies(text: &str) -> BTreeMap<String, Vec<String>> {
    let Ok(doc) = serde_yaml_ng::from_str::<Value>(text) else {
        return BTreeMap::new();
    };
    let Some(services) = doc.get("services").and_then(Value::as_mapping) else {
        return BTreeMap::new();
    };
    services
        .iter()
        .filter_map(|(name, body)| {
            let name = name.as_str()?.to_owned();
            let deps = match body.get("depends_on") {
                Some(Value::Sequence(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                Some(Value::Mapping(map)) => map
                    .keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            Some((name, deps))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_forms() {
        let text = "services:\n  web:\n    depends_on: [api, cache]\n  api:\n    depends_on:\n      db:\n        condition: service_healthy\n  db:\n    image: postgres\n";
        let deps = dependencies(text);
        assert_eq!(deps["web"], ["api", "cache"]);
        assert_eq!(deps["api"], ["db"]);
        assert!(deps["db"].is_empty());
        assert!(dependencies("not: [valid").is_empty());
    }
}
