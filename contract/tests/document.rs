//! The checked-in document is the generated one.

#[test]
fn the_checked_in_document_is_the_generated_one() {
    let generated = contract::to_json(&contract::document());
    let path = contract::checked_in_path();
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == checked_in,
        "{} differs from the document generated from the wire types: run `cargo run -p contract -- --write`",
        path.display()
    );
}

#[test]
fn the_documented_services_are_the_catalogue() {
    let document = serde_json::to_value(contract::document()).unwrap_or_default();
    let documented: Vec<&str> = document["components"]["schemas"]["ServiceId"]["enum"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let catalogue: Vec<&str> = domain::integrations::CATALOGUE.iter().map(|s| s.id).collect();
    assert_eq!(documented, catalogue);
}

#[test]
fn the_documented_logo_limit_is_the_rule_and_fits_a_body() {
    let document = serde_json::to_value(contract::document()).unwrap_or_default();
    let documented =
        document["components"]["schemas"]["OrgBranding"]["properties"]["logo"]["maxLength"].as_u64();
    assert_eq!(documented, Some(domain::org::MAX_LOGO_CHARS as u64));
    // The edge reads at most 64 KiB of body; a policies body holds the logo and a few fields.
    const { assert!(domain::org::MAX_LOGO_CHARS + 4 * 1024 <= 64 * 1024) };
}
