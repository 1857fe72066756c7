//! Organizations (issue 19): seats (pending invitations hold them, atomically), invitations
//! accepted by the invited address, the organization's tier and second-factor policy applied
//! by the edge on the member's next request, removal ending sessions at once, roles, the
//! ownership transfer's fresh proof, the audit trail, and the posture view.

use anyhow::{ensure, Context, Result};
use e2e::api::{unique_email, Answer, GOOD_PASSWORD};
use serde_json::{json, Value};

use crate::accounts::{expect, expect_problem, users};
use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "orgs::a_white_label_reaches_the_members_page_and_the_organizations_mails",
        a_white_label_reaches_the_members_page_and_the_organizations_mails,
    ),
    (
        "orgs::an_org_with_three_seats_refuses_a_fourth_invitation_even_when_they_race",
        an_org_with_three_seats_refuses_a_fourth_invitation_even_when_they_race,
    ),
    (
        "orgs::an_invited_user_accepts_and_gets_the_org_tier_and_mfa_policy_on_the_next_request",
        an_invited_user_accepts_and_gets_the_org_tier_and_mfa_policy_on_the_next_request,
    ),
    (
        "orgs::removal_ends_the_members_sessions_at_once_and_their_tier_falls_back",
        removal_ends_the_members_sessions_at_once_and_their_tier_falls_back,
    ),
    (
        "orgs::roles_change_within_the_rules_and_the_audit_trail_is_for_admins",
        roles_change_within_the_rules_and_the_audit_trail_is_for_admins,
    ),
    (
        "orgs::an_ownership_transfer_needs_the_owners_fresh_proof",
        an_ownership_transfer_needs_the_owners_fresh_proof,
    ),
    (
        "orgs::the_posture_view_shows_security_facts_only_and_admins_end_sessions",
        the_posture_view_shows_security_facts_only_and_admins_end_sessions,
    ),
    (
        "orgs::self_service_creation_is_for_enterprise_accounts",
        self_service_creation_is_for_enterprise_accounts,
    ),
];

struct Person {
    id: String,
    email: String,
    token: String,
}

fn person(ctx: &Ctx, prefix: &str) -> Result<Person> {
    let email = unique_email(prefix);
    let created = ctx.api.signup(&email, GOOD_PASSWORD, json!({ "display_name": "Org Tester" }))?;
    expect(&created, 201)?;
    let token = ctx.api.login(&email, GOOD_PASSWORD)?;
    Ok(Person { id: created.str("id"), email, token })
}

fn unique_slug() -> String {
    unique_email("team").split('@').next().unwrap_or_default().to_owned()
}

fn orgs(id: &str) -> String {
    format!("/api/v1/orgs/{id}")
}

/// An organization a platform admin created with `seats` for a new owner; the owner signs in
/// again with a second factor, as the organization's default policy requires.
fn org_with_owner(ctx: &Ctx, seats: u32) -> Result<(String, Person)> {
    let mut owner = person(ctx, "owner")?;
    let created = ctx.api.post(
        "/api/v1/orgs",
        Some(&ctx.admin_token),
        &json!({ "name": "Acme Music", "slug": unique_slug(), "seats": seats, "owner_id": owner.id }),
    )?;
    expect(&created, 201)?;
    assert_eq!(created.body["seats"], seats);
    assert_eq!(created.body["tier"], "enterprise");
    assert_eq!(created.body["policies"]["mfa_required"], true);
    ensure!(created.body.get("gate").is_none(), "the gate updates leaked: {}", created.body);
    owner.token = ctx.stack.login_with_email_code(&ctx.api, &owner.email, GOOD_PASSWORD)?;
    Ok((created.str("id"), owner))
}

fn invite(ctx: &Ctx, org: &str, token: &str, email: &str) -> Result<Answer> {
    ctx.api.post(&format!("{}/invitations", orgs(org)), Some(token), &json!({ "email": email }))
}

/// The invitation token of the last invitation mailed to `email` (as its reader finds it).
fn invitation_token(ctx: &Ctx, email: &str) -> Result<String> {
    let token = ctx.stack.last_code_for(email).context("no invitation in the outbox")?;
    ensure!(token.starts_with("inv_"), "not an invitation token: {token}");
    Ok(token)
}

/// Invites `member`, who accepts and signs in again with a second factor (the policy).
fn join(ctx: &Ctx, org: &str, owner: &Person, member: &mut Person) -> Result<()> {
    expect(&invite(ctx, org, &owner.token, &member.email)?, 201)?;
    let token = invitation_token(ctx, &member.email)?;
    let accepted =
        ctx.api.post("/api/v1/invitations/accept", Some(&member.token), &json!({ "token": token }))?;
    expect(&accepted, 200)?;
    member.token = ctx.stack.login_with_email_code(&ctx.api, &member.email, GOOD_PASSWORD)?;
    Ok(())
}

fn policy_of(answer: &Answer) -> String {
    answer.header("ratelimit-policy").unwrap_or_default()
}

fn an_org_with_three_seats_refuses_a_fourth_invitation_even_when_they_race(ctx: &Ctx) -> Result<()> {
    let (org, owner) = org_with_owner(ctx, 3)?;
    // The owner holds one seat: six invitations race for the other two.
    let emails: Vec<String> = (0..6).map(|_| unique_email("seat")).collect();
    let answers: Vec<Answer> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            emails.iter().map(|email| scope.spawn(|| invite(ctx, &org, &owner.token, email))).collect();
        handles.into_iter().map(|h| h.join().expect("an invitation thread panicked")).collect::<Result<_>>()
    })?;
    let invited: Vec<&Answer> = answers.iter().filter(|a| a.status == 201).collect();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 409).collect();
    eprintln!("6 racing invitations for 2 free seats: {} invited, {} refused", invited.len(), refused.len());
    assert_eq!(invited.len(), 2, "{answers:?}");
    assert_eq!(refused.len(), 4, "{answers:?}");
    for answer in refused {
        expect_problem(answer, 409, "conflict")?;
        assert_eq!(answer.body["seats"], 3);
        assert_eq!(answer.body["rule"], "seats");
        ensure!(
            answer.str("detail").contains("3 seats"),
            "the refusal does not name the limit: {}",
            answer.body
        );
    }
    // Members and pending invitations hold all 3 seats: a 4th is refused, pending counted.
    let read = ctx.api.get(&orgs(&org), Some(&owner.token))?;
    expect(&read, 200)?;
    assert_eq!(
        (read.body["members"].as_u64(), read.body["pending_invitations"].as_u64()),
        (Some(1), Some(2))
    );
    expect_problem(&invite(ctx, &org, &owner.token, &unique_email("fourth"))?, 409, "conflict")?;
    // The pending invitations are listed with their addresses (the organization's own data).
    let pending = ctx.api.get(&format!("{}/invitations", orgs(&org)), Some(&owner.token))?;
    expect(&pending, 200)?;
    let listed: Vec<&str> = pending.body["invitations"]
        .as_array()
        .context("no list")?
        .iter()
        .filter_map(|i| i["email"].as_str())
        .collect();
    assert_eq!(listed.len(), 2);
    for i in &invited {
        ensure!(listed.contains(&i.str("email").as_str()), "{} not listed in {listed:?}", i.str("email"));
        ensure!(i.str("expires_at").ends_with('Z'), "not an RFC 3339 UTC time: {}", i.body);
    }
    Ok(())
}

fn an_invited_user_accepts_and_gets_the_org_tier_and_mfa_policy_on_the_next_request(ctx: &Ctx) -> Result<()> {
    let (org, owner) = org_with_owner(ctx, 5)?;
    let member = person(ctx, "member")?;
    let before = ctx.api.get(&users(&member.id), Some(&member.token))?;
    expect(&before, 200)?;
    ensure!(policy_of(&before).starts_with("\"free\";q=100;"), "before: {}", policy_of(&before));

    expect(&invite(ctx, &org, &owner.token, &member.email)?, 201)?;
    let token = invitation_token(ctx, &member.email)?;
    // The invitation works for the invited address only.
    let stranger = person(ctx, "stranger")?;
    let wrong =
        ctx.api.post("/api/v1/invitations/accept", Some(&stranger.token), &json!({ "token": token }))?;
    expect_problem(&wrong, 403, "forbidden")?;

    let accepted =
        ctx.api.post("/api/v1/invitations/accept", Some(&member.token), &json!({ "token": token }))?;
    expect(&accepted, 200)?;
    assert_eq!(accepted.body["id"], org.as_str());
    assert_eq!(accepted.body["your_role"], "member");
    // Single use.
    let again =
        ctx.api.post("/api/v1/invitations/accept", Some(&stranger.token), &json!({ "token": token }))?;
    expect_problem(&again, 410, "gone")?;

    // The next request: the session was opened with a password alone, and the organization
    // requires a second factor.
    let next = ctx.api.get(&users(&member.id), Some(&member.token))?;
    expect_problem(&next, 401, "unauthenticated")?;
    ensure!(next.str("detail").contains("second factor"), "{}", next.body);
    // Signing in again asks for one (an email code: the member has no authenticator yet).
    let first = ctx.api.post(
        "/api/v1/auth/login",
        None,
        &json!({ "email": member.email, "password": GOOD_PASSWORD }),
    )?;
    expect_problem(&first, 401, "mfa-required")?;
    let token = ctx.stack.login_with_email_code(&ctx.api, &member.email, GOOD_PASSWORD)?;
    let now = ctx.api.get(&users(&member.id), Some(&token))?;
    expect(&now, 200)?;
    ensure!(policy_of(&now).starts_with("\"enterprise\";q=50000;"), "after: {}", policy_of(&now));
    let claims = ctx.api.get("/api/v1/auth/token", Some(&token))?;
    expect(&claims, 200)?;
    assert_eq!(claims.body["org"], org.as_str());
    assert_eq!(claims.body["tier"], "enterprise");
    // The profile keeps the member's own tier: the organization's applies while they belong.
    assert_eq!(now.body["tier"], "free");
    // So do the entitlements: the organization's tier, and the organization named.
    let entitled = ctx.api.get(&format!("{}/entitlements", users(&member.id)), Some(&token))?;
    expect(&entitled, 200)?;
    assert_eq!(entitled.body["tier"], "enterprise", "{}", entitled.body);
    assert_eq!(entitled.body["organization"]["id"], org.as_str());

    // A policy change reaches the member's gate at once: without the requirement, a
    // password-only session is accepted again.
    let relaxed = ctx.api.patch(
        &format!("{}/policies", orgs(&org)),
        &owner.token,
        &json!({ "mfa_required": false }),
    )?;
    expect(&relaxed, 200)?;
    assert_eq!(relaxed.body["policies"]["mfa_required"], false);
    let password_only = ctx.api.login(&member.email, GOOD_PASSWORD)?;
    expect(&ctx.api.get(&users(&member.id), Some(&password_only))?, 200)?;
    let strict =
        ctx.api.patch(&format!("{}/policies", orgs(&org)), &owner.token, &json!({ "mfa_required": true }))?;
    expect(&strict, 200)?;
    expect_problem(&ctx.api.get(&users(&member.id), Some(&password_only))?, 401, "unauthenticated")?;
    expect(&ctx.api.get(&users(&member.id), Some(&token))?, 200)?;
    Ok(())
}

fn removal_ends_the_members_sessions_at_once_and_their_tier_falls_back(ctx: &Ctx) -> Result<()> {
    let (org, owner) = org_with_owner(ctx, 5)?;
    let mut member = person(ctx, "leaver")?;
    join(ctx, &org, &owner, &mut member)?;
    // A second session of the member (signed in with the code again).
    let second = ctx.stack.login_with_email_code(&ctx.api, &member.email, GOOD_PASSWORD)?;
    expect(&ctx.api.get(&users(&member.id), Some(&member.token))?, 200)?;
    // Read (and cached at the edge) while a member: the removal must not leave it served.
    let entitled = ctx.api.get(&format!("{}/entitlements", users(&member.id)), Some(&member.token))?;
    expect(&entitled, 200)?;
    assert_eq!(entitled.body["tier"], "enterprise", "{}", entitled.body);

    let removed =
        ctx.api.delete_with(&format!("{}/members/{}", orgs(&org), member.id), &owner.token, &json!({}))?;
    expect(&removed, 204)?;
    for token in [&member.token, &second] {
        let refused = ctx.api.get(&users(&member.id), Some(token))?;
        expect_problem(&refused, 401, "unauthenticated")?;
        ensure!(refused.str("detail").contains("removed from the organization"), "{}", refused.body);
    }
    // Signing in again: no second factor required any more, and the member's own tier.
    let token = ctx.api.login(&member.email, GOOD_PASSWORD)?;
    let read = ctx.api.get(&users(&member.id), Some(&token))?;
    expect(&read, 200)?;
    ensure!(policy_of(&read).starts_with("\"free\";q=100;"), "after removal: {}", policy_of(&read));
    let entitled = ctx.api.get(&format!("{}/entitlements", users(&member.id)), Some(&token))?;
    expect(&entitled, 200)?;
    assert_eq!(entitled.body["tier"], "free", "{}", entitled.body);
    ensure!(entitled.body["organization"].is_null(), "{}", entitled.body);
    let claims = ctx.api.get("/api/v1/auth/token", Some(&token))?;
    ensure!(claims.body.get("org").is_none(), "the org claim stayed: {}", claims.body);
    // No longer a member: the organization is not theirs to read.
    expect_problem(&ctx.api.get(&orgs(&org), Some(&token))?, 404, "not-found")?;
    // The owner cannot be removed (nor leave) without a transfer first.
    let owner_out =
        ctx.api.delete_with(&format!("{}/members/{}", orgs(&org), owner.id), &owner.token, &json!({}))?;
    expect_problem(&owner_out, 403, "forbidden")?;
    assert_eq!(owner_out.body["rule"], "owner-stays");
    Ok(())
}

fn roles_change_within_the_rules_and_the_audit_trail_is_for_admins(ctx: &Ctx) -> Result<()> {
    let (org, owner) = org_with_owner(ctx, 5)?;
    let mut alice = person(ctx, "alice")?;
    let mut bob = person(ctx, "bob")?;
    join(ctx, &org, &owner, &mut alice)?;
    join(ctx, &org, &owner, &mut bob)?;
    let role = |id: &str| format!("{}/members/{id}/role", orgs(&org));

    // A member may not invite, change roles, or read the trail.
    let as_member = invite(ctx, &org, &bob.token, &unique_email("nope"))?;
    expect_problem(&as_member, 403, "forbidden")?;
    expect_problem(
        &ctx.api.put(&role(&alice.id), &bob.token, &json!({ "role": "admin" }), None)?,
        403,
        "forbidden",
    )?;
    expect_problem(&ctx.api.get(&format!("{}/audit", orgs(&org)), Some(&bob.token))?, 403, "forbidden")?;

    // The owner makes alice an admin; she runs members but does not make admins.
    let promoted = ctx.api.put(&role(&alice.id), &owner.token, &json!({ "role": "admin" }), None)?;
    expect(&promoted, 200)?;
    assert_eq!(promoted.body["role"], "admin");
    let by_admin = ctx.api.put(&role(&bob.id), &alice.token, &json!({ "role": "admin" }), None)?;
    expect_problem(&by_admin, 403, "forbidden")?;
    assert_eq!(by_admin.body["rule"], "admins-by-owner");
    let to_owner = ctx.api.put(&role(&bob.id), &owner.token, &json!({ "role": "owner" }), None)?;
    expect_problem(&to_owner, 403, "forbidden")?;
    assert_eq!(to_owner.body["rule"], "owner-by-transfer");
    expect(&invite(ctx, &org, &alice.token, &unique_email("by-admin"))?, 201)?;
    let members = ctx.api.get(&format!("{}/members", orgs(&org)), Some(&alice.token))?;
    expect(&members, 200)?;
    let roles: Vec<(String, String)> = members.body["members"]
        .as_array()
        .context("no members")?
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap_or_default().to_owned(),
                m["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        vec![
            (owner.id.clone(), "owner".into()),
            (alice.id.clone(), "admin".into()),
            (bob.id.clone(), "member".into())
        ]
    );
    // An outsider learns nothing of the organization.
    let outsider = person(ctx, "outsider")?;
    expect_problem(&ctx.api.get(&format!("{}/audit", orgs(&org)), Some(&outsider.token))?, 404, "not-found")?;

    // The trail, for admins: every change, in order, naming no address.
    let trail = ctx.api.get(&format!("{}/audit", orgs(&org)), Some(&alice.token))?;
    expect(&trail, 200)?;
    let entries = trail.body["entries"].as_array().context("no entries")?;
    let actions: Vec<&str> = entries.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "org_created",
            "member_invited",
            "member_joined",
            "member_invited",
            "member_joined",
            "role_changed",
            "member_invited"
        ]
    );
    let changed = &entries[5];
    assert_eq!(changed["user_id"], alice.id.as_str());
    assert_eq!(changed["detail"], "member->admin");
    ensure!(changed["actor"].as_str().is_some_and(|a| a.contains(&owner.id)), "{changed}");
    let text = trail.body.to_string();
    for p in [&owner, &alice, &bob] {
        ensure!(!text.contains(&p.email), "the trail names an address: {text}");
    }
    Ok(())
}

fn an_ownership_transfer_needs_the_owners_fresh_proof(ctx: &Ctx) -> Result<()> {
    let (org, owner) = org_with_owner(ctx, 5)?;
    let mut heir = person(ctx, "heir")?;
    join(ctx, &org, &owner, &mut heir)?;
    let transfer = format!("{}/transfer", orgs(&org));
    let body = json!({ "new_owner": heir.id });

    // The owner's sign-in is older than a step-up must be: a fresh proof is asked for.
    let unproven = ctx.api.post(&transfer, Some(&owner.token), &body)?;
    expect_problem(&unproven, 403, "step-up-required")?;
    // Someone else cannot, whatever their proof.
    let by_member = ctx.api.post(&transfer, Some(&heir.token), &json!({ "new_owner": heir.id }))?;
    expect_problem(&by_member, 403, "forbidden")?;
    // A wrong password is no proof.
    let wrong = ctx.api.post(
        &transfer,
        Some(&owner.token),
        &json!({ "new_owner": heir.id, "current_password": "not the password at all" }),
    )?;
    ensure!(
        wrong.status == 401 || wrong.status == 403,
        "a wrong password answered {}: {}",
        wrong.status,
        wrong.body
    );

    // After a step-up of the owner's session, the transfer goes through.
    let stepped = ctx.api.post(
        "/api/v1/auth/step-up",
        Some(&owner.token),
        &json!({ "current_password": GOOD_PASSWORD }),
    )?;
    expect(&stepped, 200)?;
    let done = ctx.api.post(&transfer, Some(&owner.token), &body)?;
    expect(&done, 200)?;
    assert_eq!(done.body["owner"], heir.id.as_str());
    assert_eq!(done.body["previous_owner_role"], "admin");
    let read = ctx.api.get(&orgs(&org), Some(&heir.token))?;
    assert_eq!(read.body["your_role"], "owner");
    let read = ctx.api.get(&orgs(&org), Some(&owner.token))?;
    assert_eq!(read.body["your_role"], "admin");
    // The former owner no longer transfers anything.
    let back = ctx.api.post(&transfer, Some(&owner.token), &json!({ "new_owner": owner.id }))?;
    expect_problem(&back, 403, "forbidden")?;
    let trail = ctx.api.get(&format!("{}/audit", orgs(&org)), Some(&heir.token))?;
    let last = trail.body["entries"].as_array().and_then(|e| e.last()).cloned().unwrap_or(Value::Null);
    assert_eq!(last["action"], "ownership_transferred");
    assert_eq!(last["detail"], format!("from={} to={}", owner.id, heir.id).as_str());
    Ok(())
}

fn the_posture_view_shows_security_facts_only_and_admins_end_sessions(ctx: &Ctx) -> Result<()> {
    let (org, owner) = org_with_owner(ctx, 5)?;
    let mut member = person(ctx, "posture")?;
    join(ctx, &org, &owner, &mut member)?;
    let posture = ctx.api.get(&format!("{}/posture", orgs(&org)), Some(&owner.token))?;
    expect(&posture, 200)?;
    let members = posture.body["members"].as_array().context("no members")?;
    assert_eq!(members.len(), 2);
    for m in members {
        let mut keys: Vec<&str> =
            m.as_object().context("not an object")?.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            vec!["active_sessions", "factors", "last_login_at", "mfa_enrolled", "role", "user_id"]
        );
    }
    let seen =
        members.iter().find(|m| m["user_id"] == member.id.as_str()).context("the member is missing")?;
    assert_eq!(seen["mfa_enrolled"], false);
    assert_eq!(seen["role"], "member");
    ensure!(seen["last_login_at"].as_str().is_some(), "no last login: {seen}");
    // The signup's password-only session was refused by the policy; the code sign-in is open.
    ensure!(seen["active_sessions"].as_u64().is_some_and(|n| n >= 1), "{seen}");
    let text = posture.body.to_string();
    ensure!(
        !text.contains(&member.email) && !text.contains("Org Tester"),
        "personal data in the posture: {text}"
    );
    // A member does not see it.
    expect_problem(&ctx.api.get(&format!("{}/posture", orgs(&org)), Some(&member.token))?, 403, "forbidden")?;

    // The owner ends the member's sessions: at once.
    let ended = ctx.api.delete_with(
        &format!("{}/members/{}/sessions", orgs(&org), member.id),
        &owner.token,
        &json!({}),
    )?;
    expect(&ended, 204)?;
    expect_problem(&ctx.api.get(&users(&member.id), Some(&member.token))?, 401, "unauthenticated")?;
    let after = ctx.api.get(&format!("{}/posture", orgs(&org)), Some(&owner.token))?;
    let seen = after.body["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["user_id"] == member.id.as_str()).cloned())
        .context("the member is missing")?;
    assert_eq!(seen["active_sessions"], 0);
    let trail = ctx.api.get(&format!("{}/audit", orgs(&org)), Some(&owner.token))?;
    let last = trail.body["entries"].as_array().and_then(|e| e.last()).cloned().unwrap_or(Value::Null);
    assert_eq!(last["action"], "sessions_ended");
    assert_eq!(last["user_id"], member.id.as_str());
    Ok(())
}

fn self_service_creation_is_for_enterprise_accounts(ctx: &Ctx) -> Result<()> {
    let free = person(ctx, "selfserve")?;
    let body = json!({ "name": "Garage Band", "slug": unique_slug() });
    let refused = ctx.api.post("/api/v1/orgs", Some(&free.token), &body)?;
    expect_problem(&refused, 403, "forbidden")?;
    assert_eq!(refused.body["rule"], "org-tier");
    // Upgraded to enterprise (by an admin), the same user creates it, with the plan's seats.
    let upgraded = ctx.api.post(
        &format!("{}/upgrade", users(&free.id)),
        Some(&ctx.admin_token),
        &json!({ "tier": "enterprise" }),
    )?;
    expect(&upgraded, 200)?;
    let token = ctx.stack.login_with_email_code(&ctx.api, &free.email, GOOD_PASSWORD)?;
    let bad = ctx.api.post("/api/v1/orgs", Some(&token), &json!({ "name": "x", "slug": "Not A Slug" }))?;
    expect_problem(&bad, 400, "validation-failed")?;
    let created = ctx.api.post("/api/v1/orgs", Some(&token), &body)?;
    expect(&created, 201)?;
    assert_eq!(created.body["seats"], 25);
    assert_eq!(created.header("location"), Some(orgs(&created.str("id"))));
    let taken = ctx.api.post(
        "/api/v1/orgs",
        Some(&ctx.admin_token),
        &json!({ "name": "Copy", "slug": body["slug"], "owner_id": person(ctx, "copy")?.id }),
    )?;
    expect_problem(&taken, 409, "conflict")?;
    Ok(())
}

/// A 1×1 PNG, as a `data:` URL.
const LOGO: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn a_white_label_reaches_the_members_page_and_the_organizations_mails(ctx: &Ctx) -> Result<()> {
    let (org, owner) = org_with_owner(ctx, 5)?;
    let policies = format!("{}/policies", orgs(&org));
    // Values that could carry markup, script or header syntax are refused, each named.
    let unsafe_values = ctx.api.patch(
        &policies,
        &owner.token,
        &json!({ "branding": {
            "accent_color": "red; background: url(https://evil.example/x)",
            "logo": "data:image/svg+xml;base64,PHN2Zz4=",
            "sender_name": "Acme <ceo@evil.example>"
        }}),
    )?;
    expect_problem(&unsafe_values, 400, "validation-failed")?;
    let body = &unsafe_values.body;
    let fields: Vec<&str> =
        body["errors"].as_array().into_iter().flatten().filter_map(|e| e["field"].as_str()).collect();
    for field in ["branding.accent_color", "branding.logo", "branding.sender_name"] {
        ensure!(fields.contains(&field), "{field} not named: {body}");
    }
    let accent = "#0a7f5c";
    let branded = ctx.api.patch(
        &policies,
        &owner.token,
        &json!({ "mfa_required": false, "branding": {
            "accent_color": accent, "primary_color": "#102030", "logo": LOGO, "sender_name": "Acme Music"
        }}),
    )?;
    expect(&branded, 200)?;
    assert_eq!(branded.body["policies"]["branding"]["sender_name"], "Acme Music");

    // The invitation goes out under the organization's sender name.
    let member = person(ctx, "branded")?;
    expect(&invite(ctx, &org, &owner.token, &member.email)?, 201)?;
    let outbox = std::fs::read_to_string(ctx.stack.outbox_path())?;
    let mail = outbox
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| m["to"] == member.email.as_str())
        .context("no invitation mail")?;
    assert_eq!(mail["sender_name"], "Acme Music", "{mail}");
    let token = invitation_token(ctx, &member.email)?;
    let accepted =
        ctx.api.post("/api/v1/invitations/accept", Some(&member.token), &json!({ "token": token }))?;
    expect(&accepted, 200)?;
    // Members read the branding with their organization.
    let fresh = ctx.api.login(&member.email, GOOD_PASSWORD)?;
    let read = ctx.api.get(&orgs(&org), Some(&fresh))?;
    expect(&read, 200)?;
    assert_eq!(read.body["policies"]["branding"]["logo"], LOGO);

    // The member's account page shows it (headless Chromium; a screenshot is saved).
    let env = vec![
        ("EDGE_LOCAL_URL", ctx.stack.edge_localhost_url()),
        ("USER_EMAIL", member.email.clone()),
        ("USER_PASSWORD", GOOD_PASSWORD.to_owned()),
        ("BRAND_ACCENT", accent.to_owned()),
    ];
    let output =
        e2e::browser::run("white-label.mjs", "white-label", &env, std::time::Duration::from_secs(90))?;
    ensure!(output.contains("branded-account.png"), "screenshots:\n{output}");
    Ok(())
}
