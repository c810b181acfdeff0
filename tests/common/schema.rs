//! Checks a YAML config against the JSON Schema `tiktok-gateway schema` prints, so every config a
//! test starts a gateway with is also proof that the schema accepts what the gateway runs.

/// Every schema violation in `yaml`, as `<json pointer>: <message>`; empty when it conforms.
pub fn schema_errors(yaml: &str) -> Vec<String> {
    let schema: serde_json::Value =
        serde_json::from_str(&tiktok_gateway::ops::schema::config_schema_json())
            .expect("the generated schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the generated schema compiles");
    let instance: serde_json::Value = match serde_saphyr::from_str(yaml) {
        Ok(v) => v,
        Err(e) => return vec![format!("not YAML: {e}")],
    };
    validator
        .iter_errors(&instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Panics with every violation when `yaml` does not conform to the schema.
pub fn assert_conforms(what: &str, yaml: &str) {
    let errors = schema_errors(yaml);
    assert!(
        errors.is_empty(),
        "{what} does not conform to gateway.schema.json:\n  {}",
        errors.join("\n  ")
    );
}
