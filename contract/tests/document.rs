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
