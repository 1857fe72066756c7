//! The files the jobs write (reports, activation tokens): private to the origin's user, and
//! CSV cells that a spreadsheet cannot take for formulas.
//!
//! Reports name users and activation files hold credentials, so every file is created with
//! mode 0600 (and its folder 0700), and a file already there is narrowed to 0600 before it is
//! rewritten. CSV cells follow OWASP's advice against CSV injection: a cell that starts with
//! `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with `'`, so that Excel, LibreOffice
//! or Google Sheets show it as text instead of evaluating it; and cells are quoted per RFC 4180
//! whenever they hold a comma, a quote or a line break, so a value cannot add columns or rows.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

/// The characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection).
const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One CSV cell of text: neutralised against formula injection, then quoted if it must be.
pub fn csv_cell(value: &str) -> Cow<'_, str> {
    let neutral: Cow<'_, str> = if value.starts_with(FORMULA_TRIGGERS) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    };
    if neutral.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", neutral.replace('"', "\"\"")))
    } else {
        neutral
    }
}

/// One CSV line (with its `\n`) of text cells.
pub fn csv_line(cells: &[&str]) -> String {
    let mut line = cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",");
    line.push('\n');
    line
}

/// Creates `dir` and its missing parents, private to the origin's user (0700) where created.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `contents` to `path` (replacing it), readable and writable by the origin's user
/// only (0600), flushed to disk.
pub fn write_private(path: &Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // The mode applies only to a file this call creates; one left by an older run is narrowed.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(contents.as_ref())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_that_start_a_formula_are_neutralised() {
        for (raw, expected) in [
            ("=HYPERLINK(\"http://x\")", "\"'=HYPERLINK(\"\"http://x\"\")\""),
            ("+1+2", "'+1+2"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tcmd", "'\tcmd"),
            ("\rcmd", "\"'\rcmd\""),
            ("=1,2", "\"'=1,2\""),
        ] {
            assert_eq!(csv_cell(raw), expected, "{raw:?}");
        }
    }

    #[test]
    fn ordinary_csv_cells_pass_unchanged_or_quoted() {
        assert_eq!(csv_cell("usr_0123"), "usr_0123");
        assert_eq!(csv_cell("power user"), "power user");
        assert_eq!(csv_cell("a=b"), "a=b", "only a leading trigger is a formula");
        assert_eq!(csv_cell(""), "");
        assert_eq!(csv_cell("a,b@example.com"), "\"a,b@example.com\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_line(&["=x@example.com", "act_1"]), "'=x@example.com,act_1\n");
    }

    #[cfg(unix)]
    #[test]
    fn written_files_are_private_to_the_origin_user() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("reports/nested");
        create_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let path = dir.join("report.csv");
        write_private(&path, "a,b\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // A file an older run left readable by others is narrowed when rewritten.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, "c\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "c\n");
    }
}
