//! The JSON Schema of `gateway.yaml`, derived from the config file model
//! ([`crate::config::file::ConfigFile`]) so it cannot drift from what the loader accepts: the same
//! field names, the same required keys, `additionalProperties: false` wherever the loader refuses
//! unknown keys. Durations, sizes and secret references are strings here (the loader checks them);
//! their descriptions say which is which. `gateway.schema.json` in the repository is this output;
//! CI fails when it is stale.

use crate::config::file::ConfigFile;

/// The schema as pretty JSON with a trailing newline, exactly as checked in.
pub fn config_schema_json() -> String {
    let schema = schemars::schema_for!(ConfigFile);
    // Serialising a `serde_json::Value`-backed schema cannot fail (string keys only).
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> serde_json::Value {
        serde_json::from_str(&config_schema_json()).unwrap()
    }

    #[test]
    fn unknown_keys_are_refused_like_the_loader_does() {
        let s = schema();
        assert_eq!(s["additionalProperties"], serde_json::json!(false));
        assert_eq!(
            s["$defs"]["ListenerFile"]["additionalProperties"],
            serde_json::json!(false)
        );
    }

    #[test]
    fn required_keys_follow_serde_defaults() {
        let s = schema();
        assert_eq!(s["required"], serde_json::json!(["listeners"]));
        let route_required = s["$defs"]["RouteFile"]["required"].as_array().unwrap();
        for key in ["name", "listener", "match", "upstream"] {
            assert!(route_required.contains(&serde_json::json!(key)), "{key}");
        }
        // `#[serde(default)]` fields are optional.
        assert!(!route_required.contains(&serde_json::json!("limits")));
    }

    #[test]
    fn spanned_values_are_scalars_with_descriptions() {
        let s = schema();
        let timeout = &s["$defs"]["ConnectionsFile"]["properties"]["header_timeout"];
        assert!(
            timeout["description"]
                .as_str()
                .unwrap()
                .starts_with("Duration")
        );
        let address = &s["$defs"]["ListenerFile"]["properties"]["address"];
        // Any scalar: the loader reads `512` as the text "512".
        assert_eq!(address["type"], serde_json::json!(["string", "number"]));
    }
}
