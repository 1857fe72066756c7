//! Data hardening: look-alike addresses are one account, SMS enrolment cannot be used to pump
//! texts, and the local secrets `scripts/run` writes are private.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Result};
use e2e::api::{unique_email, GOOD_PASSWORD};
use serde_json::{json, Value};

use crate::accounts::{expect, expect_problem, users};
use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "hardening_data::look_alike_addresses_of_an_account_cannot_sign_up_again",
        look_alike_addresses_of_an_account_cannot_sign_up_again,
    ),
    (
        "hardening_data::a_unicode_domain_and_its_punycode_are_one_account",
        a_unicode_domain_and_its_punycode_are_one_account,
    ),
    (
        "hardening_data::the_fourth_enrolment_text_to_one_number_in_a_day_is_refused_with_429",
        the_fourth_enrolment_text_to_one_number_in_a_day_is_refused_with_429,
    ),
    (
        "hardening_data::local_secrets_are_written_private_and_older_ones_narrowed",
        local_secrets_are_written_private_and_older_ones_narrowed,
    ),
];

/// The fullwidth form (U+FF01–U+FF5E) of every printable ASCII character of `s`.
fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| if ('!'..='~').contains(&c) { char::from_u32(c as u32 + 0xFEE0).unwrap() } else { c })
        .collect()
}

fn look_alike_addresses_of_an_account_cannot_sign_up_again(ctx: &Ctx) -> Result<()> {
    let email = unique_email("lookalike");
    expect(&ctx.api.signup(&email, GOOD_PASSWORD, Value::Null)?, 201)?;
    let (local, domain) = email.split_once('@').unwrap();
    for variant in [
        format!("{}@{}", local, domain.to_uppercase()),
        email.to_uppercase(),
        fullwidth(&email),
        format!("{}@{domain}", fullwidth(local)),
        format!("{local}＠{}", fullwidth(domain)),
        format!("{local}@{}", domain.replace('.', "。")),
    ] {
        let again = ctx.api.signup(&variant, GOOD_PASSWORD, Value::Null)?;
        expect_problem(&again, 409, "conflict").map_err(|e| e.context(format!("signing up {variant:?}")))?;
    }
    // The same look-alikes log in to the one account.
    ctx.api.login(&fullwidth(&email), GOOD_PASSWORD)?;
    ctx.api.login(&email.to_uppercase(), GOOD_PASSWORD)?;
    Ok(())
}

fn a_unicode_domain_and_its_punycode_are_one_account(ctx: &Ctx) -> Result<()> {
    let local = unique_email("idn").split_once('@').unwrap().0.to_owned();
    let created = ctx.api.signup(&format!("{local}@Bücher.example"), GOOD_PASSWORD, Value::Null)?;
    expect(&created, 201)?;
    // Stored and shown in the domain's ASCII (Punycode) form.
    assert_eq!(created.str("email"), format!("{local}@xn--bcher-kva.example"));
    for variant in [
        format!("{local}@xn--bcher-kva.example"),
        format!("{local}@XN--BCHER-KVA.EXAMPLE"),
        format!("{local}@bu\u{308}cher.example"),
        format!("{}@BÜCHER.EXAMPLE", local.to_uppercase()),
    ] {
        let again = ctx.api.signup(&variant, GOOD_PASSWORD, Value::Null)?;
        expect_problem(&again, 409, "conflict").map_err(|e| e.context(format!("signing up {variant:?}")))?;
    }
    ctx.api.login(&format!("{local}@xn--bcher-kva.example"), GOOD_PASSWORD)?;
    Ok(())
}

fn the_fourth_enrolment_text_to_one_number_in_a_day_is_refused_with_429(ctx: &Ctx) -> Result<()> {
    let signup = |prefix: &str| -> Result<(String, String)> {
        let email = unique_email(prefix);
        let id = ctx.api.signup(&email, GOOD_PASSWORD, Value::Null)?.str("id");
        Ok((id, ctx.api.login(&email, GOOD_PASSWORD)?))
    };
    let (id, token) = signup("pumped")?;
    // Numbers unique to this run (from the user id), apart from the other SMS test's +336….
    let digits: String = id.chars().filter(char::is_ascii_digit).take(7).collect();
    let number = |n: u32| format!("+337{n}{digits:0<7}");
    let enrol = |id: &str, token: &str, phone: &str| {
        ctx.api.post(
            &format!("{}/mfa/sms", users(id)),
            Some(token),
            &json!({"phone_number": phone, "current_password": GOOD_PASSWORD}),
        )
    };

    for attempt in 1..=3 {
        let sent = enrol(&id, &token, &number(1))?;
        expect(&sent, 202).map_err(|e| e.context(format!("text {attempt}")))?;
    }
    let refused = enrol(&id, &token, &number(1))?;
    expect_problem(&refused, 429, "rate-limited")?;
    assert_eq!(refused.body["limit"], "sms_per_number_per_day", "{}", refused.body);
    assert_eq!(refused.body["max"], 3);
    let wait = refused.body["retry_after"].as_u64().unwrap();
    ensure!((1..=86_400).contains(&wait), "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some(wait.to_string()));

    // The number's limit holds whichever account asks.
    let (other, other_token) = signup("pumped-other")?;
    expect_problem(&enrol(&other, &other_token, &number(1))?, 429, "rate-limited")?;

    // The account's own limit: 5 texts a day (3 sent, the refused one did not count).
    expect(&enrol(&id, &token, &number(2))?, 202)?;
    expect(&enrol(&id, &token, &number(3))?, 202)?;
    let refused = enrol(&id, &token, &number(4))?;
    expect_problem(&refused, 429, "rate-limited")?;
    assert_eq!(refused.body["limit"], "sms_per_account_per_day", "{}", refused.body);
    assert_eq!(refused.body["max"], 5);
    Ok(())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn local_secrets_are_written_private_and_older_ones_narrowed(_: &Ctx) -> Result<()> {
    let root = e2e::repo_root();
    let script = root.join("scripts/local-secrets");
    let dir = tempfile::tempdir()?;
    let run = |dir: &Path| -> Result<()> {
        // Under a permissive umask, as a shell usually has: the script must not depend on it.
        let status = Command::new("bash")
            .arg("-c")
            .arg("umask 022; exec bash \"$0\" \"$1\"")
            .arg(&script)
            .arg(dir)
            .env("ORIGIN_PORT", "9911")
            .status()?;
        ensure!(status.success(), "scripts/local-secrets failed: {status}");
        Ok(())
    };

    // A fresh checkout.
    run(dir.path())?;
    let local = dir.path().join(".local");
    assert_eq!(mode(&local), 0o700);
    assert_eq!(mode(&local.join("data")), 0o700);
    assert_eq!(mode(&local.join("secrets.env")), 0o600);
    assert_eq!(mode(&dir.path().join(".dev.vars")), 0o600);
    let secrets = std::fs::read_to_string(local.join("secrets.env"))?;
    ensure!(secrets.contains("ORIGIN_MASTER_KEY="), "{secrets}");
    let vars = std::fs::read_to_string(dir.path().join(".dev.vars"))?;
    ensure!(vars.contains("ORIGIN_URL=http://127.0.0.1:9911\n"), "{vars}");

    // A checkout an older `scripts/run` left readable by others is narrowed; its secrets kept.
    let set = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    std::fs::write(local.join("data/origin.db"), "data")?;
    set(&local.join("data/origin.db"), 0o644)?;
    set(&local.join("secrets.env"), 0o644)?;
    set(&local.join("data"), 0o755)?;
    set(&local, 0o755)?;
    set(&dir.path().join(".dev.vars"), 0o644)?;
    run(dir.path())?;
    assert_eq!(mode(&local), 0o700);
    assert_eq!(mode(&local.join("data")), 0o700);
    assert_eq!(mode(&local.join("data/origin.db")), 0o600);
    assert_eq!(mode(&local.join("secrets.env")), 0o600);
    assert_eq!(mode(&dir.path().join(".dev.vars")), 0o600);
    assert_eq!(std::fs::read_to_string(local.join("secrets.env"))?, secrets, "generated once, then kept");

    // `scripts/run` sets the umask before it creates anything, and uses this script.
    let run_script = std::fs::read_to_string(root.join("scripts/run"))?;
    let line_of = |needle: &str| run_script.lines().position(|l| l.trim_start().starts_with(needle));
    let umask = line_of("umask 077").expect("scripts/run sets umask 077");
    for later in [
        "source scripts/bootstrap",
        "ORIGIN_PORT=\"$ORIGIN_PORT\" \"$ROOT/scripts/local-secrets\"",
        "cargo build",
    ] {
        let at = line_of(later).unwrap_or_else(|| panic!("scripts/run has no {later:?}"));
        ensure!(umask < at, "umask 077 comes after {later:?} in scripts/run");
    }
    Ok(())
}
