//! `cargo run -p contract` prints the generated OpenAPI document; `-- --write` replaces the
//! checked-in `src/openapi.json` with it.

use std::process::ExitCode;

fn main() -> ExitCode {
    let text = contract::to_json(&contract::document());
    if std::env::args().any(|a| a == "--write") {
        let path = contract::checked_in_path();
        if let Err(e) = std::fs::write(&path, &text) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("wrote {}", path.display());
    } else {
        print!("{text}");
    }
    ExitCode::SUCCESS
}
