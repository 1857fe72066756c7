//! Request dispatch: method and path to handler, with admission in front. Every protected
//! route authenticates the caller and makes its one gate call here (limit, tier, version), so
//! handlers receive a proven caller; unauthenticated endpoints are limited per client IP. Every
//! handler error becomes a response in `problem.rs`; a wrong method gets 405, an unknown path
//! 404.

use domain::identity::UserId;
use domain::problem::{Problem, ProblemKind};
use domain::wire::event::{EventKind, RequestData};
use worker::{Context, Env, Method, Request, Response, Result};

use crate::admin::AdminPath;
use crate::events::Events;
use crate::gate::GateAnswer;
use crate::users::Prefetched;

use crate::integrations::Op as IntegrationOp;
use crate::limits::{self, Admission, IpClass};
use crate::passkeys::PasskeyOp;
use crate::problem::EdgeError;
use crate::sessions::SecurityOp;
use crate::{auth, health, integrations, openapi, orgs, passkeys, rights, sessions, users};

pub async fn dispatch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let path = req.path();
    let events = Events::default();
    let outcome = match route(&method_of(&req), &path) {
        Ok(route) => route.handle(req, &env, &path, &events).await,
        Err(e) => Err(e),
    };
    let response = match outcome {
        Ok(response) => Ok(response),
        Err(e) => e.into_response(&path),
    };
    // After the answer is built, and without delaying it.
    events.ship(&env, &ctx);
    response
}

enum Route {
    Health,
    Jwks,
    OpenApi,
    Login,
    Mfa,
    MfaSend,
    MfaWebauthn,
    PasskeyOptions,
    PasskeyLogin,
    Passkeys(UserId, PasskeyOp),
    Activate,
    ForgotPassword,
    ResetPassword,
    VerifyEmail,
    ResendVerification(UserId),
    Security(UserId, SecurityOp),
    SetDisabled(UserId, bool),
    Refresh,
    StepUp,
    Logout,
    Token,
    CreateUser,
    Sessions(UserId),
    DeleteSession(UserId, String),
    ChangePassword(UserId),
    StartEmailChange(UserId),
    ConfirmEmailChange(UserId),
    ReadUser(UserId),
    UpdateUser(UserId),
    Upgrade(UserId),
    Insights(UserId),
    Export(UserId),
    ExportDownload(UserId, String),
    Erase(UserId),
    CancelErasure(UserId),
    Consents(UserId),
    ParentalConsent,
    Admin(crate::admin::AdminPath),
    Integrations(IntegrationOp),
    Orgs(orgs::OrgOp),
    Entitlements(crate::entitlements::Op),
    Personalisation(crate::personalisation::Op),
}

fn route(method: &Method, path: &str) -> std::result::Result<Route, EdgeError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    if let Some(op) = integrations::route(method, &segments, |allowed| only(method, allowed), user_id) {
        return op.map(Route::Integrations);
    }
    match segments.as_slice() {
        ["health"] => only(method, &[Method::Get]).map(|()| Route::Health),
        [".well-known", "jwks.json"] => only(method, &[Method::Get]).map(|()| Route::Jwks),
        ["api", "v1", "openapi.json"] => only(method, &[Method::Get]).map(|()| Route::OpenApi),
        ["api", "v1", "auth", "login"] => only(method, &[Method::Post]).map(|()| Route::Login),
        ["api", "v1", "auth", "token"] => only(method, &[Method::Get]).map(|()| Route::Token),
        ["api", "v1", "auth", "refresh"] => only(method, &[Method::Post]).map(|()| Route::Refresh),
        ["api", "v1", "auth", "step-up"] => only(method, &[Method::Post]).map(|()| Route::StepUp),
        ["api", "v1", "auth", "mfa"] => only(method, &[Method::Post]).map(|()| Route::Mfa),
        ["api", "v1", "auth", "activate"] => only(method, &[Method::Post]).map(|()| Route::Activate),
        ["api", "v1", "auth", "password", "forgot"] => {
            only(method, &[Method::Post]).map(|()| Route::ForgotPassword)
        }
        ["api", "v1", "auth", "password", "reset"] => {
            only(method, &[Method::Post]).map(|()| Route::ResetPassword)
        }
        ["api", "v1", "auth", "email", "verify"] => {
            only(method, &[Method::Post]).map(|()| Route::VerifyEmail)
        }
        ["api", "v1", "users", id, "email", "verification"] => {
            only(method, &[Method::Post]).and_then(|()| user_id(id)).map(Route::ResendVerification)
        }
        ["api", "v1", "auth", "parental-consent"] => {
            only(method, &[Method::Post]).map(|()| Route::ParentalConsent)
        }
        ["api", "v1", "auth", "mfa", "send"] => only(method, &[Method::Post]).map(|()| Route::MfaSend),
        ["api", "v1", "auth", "mfa", "webauthn"] => {
            only(method, &[Method::Post]).map(|()| Route::MfaWebauthn)
        }
        ["api", "v1", "auth", "passkey"] => only(method, &[Method::Post]).map(|()| Route::PasskeyLogin),
        ["api", "v1", "auth", "passkey", "options"] => {
            only(method, &[Method::Post]).map(|()| Route::PasskeyOptions)
        }
        ["api", "v1", "users", id, "passkeys"] => user_id(id).and_then(|id| match method {
            Method::Get => Ok(Route::Passkeys(id, PasskeyOp::List)),
            Method::Post => Ok(Route::Passkeys(id, PasskeyOp::Register)),
            _ => Err(not_allowed(&[Method::Get, Method::Post])),
        }),
        ["api", "v1", "users", id, "passkeys", "options"] => only(method, &[Method::Post])
            .and_then(|()| user_id(id))
            .map(|id| Route::Passkeys(id, PasskeyOp::RegistrationOptions)),
        ["api", "v1", "users", id, "passkeys", cid] => user_id(id).and_then(|id| match method {
            Method::Patch => Ok(Route::Passkeys(id, PasskeyOp::Rename((*cid).to_owned()))),
            Method::Delete => Ok(Route::Passkeys(id, PasskeyOp::Remove((*cid).to_owned()))),
            _ => Err(not_allowed(&[Method::Patch, Method::Delete])),
        }),
        ["api", "v1", "users", id, "mfa", "totp"] => user_id(id).and_then(|id| match method {
            Method::Post => Ok(Route::Security(id, SecurityOp::EnrolTotp)),
            Method::Delete => Ok(Route::Security(id, SecurityOp::RemoveTotp)),
            _ => Err(not_allowed(&[Method::Post, Method::Delete])),
        }),
        ["api", "v1", "users", id, "mfa", "totp", "confirm"] => only(method, &[Method::Post])
            .and_then(|()| user_id(id))
            .map(|id| Route::Security(id, SecurityOp::ConfirmTotp)),
        ["api", "v1", "users", id, "mfa", "sms"] => user_id(id).and_then(|id| match method {
            Method::Post => Ok(Route::Security(id, SecurityOp::EnrolSms)),
            Method::Delete => Ok(Route::Security(id, SecurityOp::RemoveSms)),
            _ => Err(not_allowed(&[Method::Post, Method::Delete])),
        }),
        ["api", "v1", "users", id, "mfa", "sms", "confirm"] => only(method, &[Method::Post])
            .and_then(|()| user_id(id))
            .map(|id| Route::Security(id, SecurityOp::ConfirmSms)),
        ["api", "v1", "users", id, "disable"] => {
            only(method, &[Method::Post]).and_then(|()| user_id(id)).map(|id| Route::SetDisabled(id, true))
        }
        ["api", "v1", "users", id, "enable"] => {
            only(method, &[Method::Post]).and_then(|()| user_id(id)).map(|id| Route::SetDisabled(id, false))
        }
        ["api", "v1", "users", id, "audit"] => only(method, &[Method::Get])
            .and_then(|()| user_id(id))
            .map(|id| Route::Security(id, SecurityOp::Audit)),
        ["api", "v1", "users", id, "security-events"] => only(method, &[Method::Get])
            .and_then(|()| user_id(id))
            .map(|id| Route::Security(id, SecurityOp::Events)),
        ["api", "v1", "auth", "logout"] => only(method, &[Method::Post]).map(|()| Route::Logout),
        ["api", "v1", "users", id, "sessions"] => {
            only(method, &[Method::Get]).and_then(|()| user_id(id)).map(Route::Sessions)
        }
        ["api", "v1", "users", id, "sessions", sid] => only(method, &[Method::Delete])
            .and_then(|()| user_id(id))
            .map(|id| Route::DeleteSession(id, (*sid).to_owned())),
        ["api", "v1", "users", id, "password"] => {
            only(method, &[Method::Put]).and_then(|()| user_id(id)).map(Route::ChangePassword)
        }
        ["api", "v1", "users", id, "email"] => {
            only(method, &[Method::Post]).and_then(|()| user_id(id)).map(Route::StartEmailChange)
        }
        ["api", "v1", "users", id, "email", "confirm"] => {
            only(method, &[Method::Post]).and_then(|()| user_id(id)).map(Route::ConfirmEmailChange)
        }
        ["api", "v1", "users"] => only(method, &[Method::Post]).map(|()| Route::CreateUser),
        ["api", "v1", "users", id] => user_id(id).and_then(|id| match method {
            Method::Get => Ok(Route::ReadUser(id)),
            Method::Put | Method::Patch => Ok(Route::UpdateUser(id)),
            Method::Delete => Ok(Route::Erase(id)),
            _ => Err(not_allowed(&[Method::Get, Method::Put, Method::Patch, Method::Delete])),
        }),
        ["api", "v1", "users", id, "export"] => {
            only(method, &[Method::Post]).and_then(|()| user_id(id)).map(Route::Export)
        }
        ["api", "v1", "users", id, "exports", export_id] => only(method, &[Method::Get])
            .and_then(|()| user_id(id))
            .map(|id| Route::ExportDownload(id, (*export_id).to_owned())),
        ["api", "v1", "users", id, "erasure", "cancel"] => {
            only(method, &[Method::Post]).and_then(|()| user_id(id)).map(Route::CancelErasure)
        }
        ["api", "v1", "users", id, "consents"] => {
            only(method, &[Method::Get, Method::Put]).and_then(|()| user_id(id)).map(Route::Consents)
        }
        ["api", "v1", "users", id, "upgrade"] => {
            only(method, &[Method::Post]).and_then(|()| user_id(id)).map(Route::Upgrade)
        }
        ["admin"] => only(method, &[Method::Get]).map(|()| Route::Admin(AdminPath::Page)),
        ["admin", "data"] => only(method, &[Method::Get]).map(|()| Route::Admin(AdminPath::Data)),
        ["admin", "assets", name] => only(method, &[Method::Get]).and_then(|()| {
            AdminPath::asset(name)
                .map(Route::Admin)
                .ok_or_else(|| EdgeError::new(ProblemKind::NotFound, format!("no route matches {path}")))
        }),
        ["api", "v1", "users", id, "insights"] => {
            only(method, &[Method::Get]).and_then(|()| user_id(id)).map(Route::Insights)
        }
        ["api", "v1", rest @ ..] if matches!(rest.first(), Some(&("orgs" | "invitations"))) => {
            orgs::route(method, rest)
                .unwrap_or_else(|| {
                    Err(EdgeError::new(ProblemKind::NotFound, format!("no route matches {path}")))
                })
                .map(Route::Orgs)
        }
        other => crate::entitlements::route(method, other)
            .map(|op| op.map(Route::Entitlements))
            .or_else(|| crate::personalisation::route(method, other).map(|op| op.map(Route::Personalisation)))
            .unwrap_or_else(|| {
                Err(EdgeError::new(ProblemKind::NotFound, format!("no route matches {path}")))
            }),
    }
}

impl Route {
    /// The endpoint class recorded with API-request events.
    fn class(&self) -> &'static str {
        match self {
            Route::ReadUser(_) => "profile_read",
            Route::UpdateUser(_) => "profile_write",
            Route::Upgrade(_) => "tier_change",
            Route::Insights(_) => "insights",
            Route::Sessions(_) | Route::DeleteSession(..) | Route::Logout => "sessions",
            Route::ChangePassword(_)
            | Route::StepUp
            | Route::Security(..)
            | Route::Passkeys(..)
            | Route::StartEmailChange(_)
            | Route::ConfirmEmailChange(_)
            | Route::ResendVerification(_) => "security",
            Route::SetDisabled(..) | Route::CreateUser | Route::Admin(_) => "admin",
            Route::Export(_)
            | Route::ExportDownload(..)
            | Route::Erase(_)
            | Route::CancelErasure(_)
            | Route::Consents(_) => "data_rights",
            Route::Integrations(_) => "integrations",
            Route::Orgs(_) => "orgs",
            _ => "other",
        }
    }

    fn handle<'a>(self, req: Request, env: &'a Env, path: &'a str, events: &'a Events) -> Pending<'a> {
        let class = self.class();
        match self {
            // Public: limited per address, and answered from a short cache (see `health.rs`).
            Route::Health => {
                ip_route(
                    req,
                    env,
                    path,
                    IpClass::Health,
                    move |_| async move { Ok(health::handle(env).await?) },
                )
            }
            Route::Jwks => Box::pin(async move { crate::http::reply(200, &auth::jwks(env).await?) }),
            Route::OpenApi => Box::pin(async { Err(openapi::missing()) }),
            Route::Login => {
                ip_route(req, env, path, IpClass::Login, move |req| sessions::login(req, env, events))
            }
            // Token introspection for its holder: a token whose session was revoked is not valid,
            // so the gate is asked (checked, not counted), as for every protected request.
            Route::Token => {
                user_route(req, env, path, false, events, class, move |_, caller, _| async move {
                    sessions::introspect(&caller)
                })
            }
            // The second step of a login counts against the same per-address login quota.
            Route::Mfa => {
                ip_route(req, env, path, IpClass::Login, move |req| sessions::complete_mfa(req, env, events))
            }
            // Activation sets a password: limited like the signups it stands for.
            Route::Activate => {
                ip_route(req, env, path, IpClass::Signup, move |req| sessions::activate(req, env))
            }
            // Account recovery: limited per address; the origin limits codes per account.
            Route::ForgotPassword => {
                ip_route(req, env, path, IpClass::Recovery, move |req| sessions::forgot_password(req, env))
            }
            Route::ResetPassword => {
                ip_route(req, env, path, IpClass::Recovery, move |req| sessions::reset_password(req, env))
            }
            Route::VerifyEmail => {
                ip_route(req, env, path, IpClass::Recovery, move |req| users::verify_email(req, env))
            }
            Route::ResendVerification(id) => {
                user_route(req, env, path, true, events, class, move |_, caller, _| {
                    users::resend_verification(env, caller, id)
                })
            }
            Route::MfaSend => {
                ip_route(req, env, path, IpClass::Login, move |req| sessions::send_code(req, env))
            }
            // The passwordless ceremony and the second factor's options count against the
            // per-address login quota, like the logins they stand for.
            Route::PasskeyOptions => {
                ip_route(req, env, path, IpClass::Login, move |_| passkeys::login_options(env))
            }
            Route::PasskeyLogin => {
                ip_route(req, env, path, IpClass::Login, move |req| passkeys::login(req, env, events))
            }
            Route::MfaWebauthn => {
                ip_route(req, env, path, IpClass::Login, move |req| passkeys::mfa_options(req, env))
            }
            Route::Passkeys(id, op) => {
                user_route(req, env, path, true, events, class, move |req, caller, gate| {
                    passkeys::account(req, env, caller, id, op, gate.stepped_up_at)
                })
            }
            Route::SetDisabled(id, disabled) => {
                user_route(req, env, path, true, events, class, move |_, caller, _| {
                    sessions::set_disabled(env, caller, id, disabled)
                })
            }
            Route::Security(id, op) => {
                user_route(req, env, path, true, events, class, move |req, caller, gate| {
                    sessions::account_security(req, env, caller, id, op, gate.stepped_up_at)
                })
            }
            Route::StepUp => user_route(req, env, path, true, events, class, move |req, caller, _| {
                sessions::step_up(req, env, caller)
            }),
            Route::Refresh => {
                ip_route(req, env, path, IpClass::Refresh, move |req| sessions::refresh(req, env))
            }
            Route::Logout => user_route(req, env, path, true, events, class, move |_, caller, _| {
                sessions::logout(env, caller)
            }),
            Route::Sessions(id) => user_route(req, env, path, true, events, class, move |_, caller, _| {
                sessions::list(env, caller, id)
            }),
            Route::DeleteSession(id, sid) => {
                user_route(req, env, path, true, events, class, move |_, caller, _| {
                    sessions::delete(env, caller, id, sid)
                })
            }
            Route::ChangePassword(id) => {
                user_route(req, env, path, true, events, class, move |req, caller, _| {
                    sessions::change_password(req, env, caller, id)
                })
            }
            Route::StartEmailChange(id) => {
                user_route(req, env, path, true, events, class, move |req, caller, _| {
                    users::start_email_change(req, env, caller, id)
                })
            }
            Route::ConfirmEmailChange(id) => {
                user_route(req, env, path, true, events, class, move |req, caller, _| {
                    users::confirm_email_change(req, env, caller, id, events)
                })
            }
            // An admin creating accounts spends their own quota; a public signup the address's
            // signup quota.
            Route::CreateUser => Box::pin(async move {
                if auth::authenticate_optional(&req, env).await?.is_some() {
                    user_route(req, env, path, true, events, class, move |req, caller, _| {
                        users::create(req, env, Some(caller))
                    })
                    .await
                } else {
                    ip_route(req, env, path, IpClass::Signup, move |req| users::create(req, env, None)).await
                }
            }),
            // The cache entry of one's own profile is read while the gate answers; whether it
            // may be served is decided after both (its version against the gate's).
            Route::ReadUser(id) => {
                let target = id.clone();
                let also: Also<'_> = Box::new(move |caller: &auth::Caller| {
                    let own = caller.id == target;
                    let key = target.to_string();
                    Box::pin(async move {
                        if own {
                            Some(crate::profile_cache::get(env, &key).await)
                        } else {
                            None
                        }
                    })
                });
                let handler: Handler<'_> = Box::new(move |req, caller, gate, prefetched| {
                    Box::pin(users::read(req, env, caller, gate, id, prefetched))
                });
                Box::pin(admitted(req, env, path, true, events, class, Some(also), handler))
            }
            Route::UpdateUser(id) => {
                user_route(req, env, path, true, events, class, move |req, caller, gate| {
                    users::update(req, env, caller, id, gate.stepped_up_at, events)
                })
            }
            // A tier change is checked but not counted against the quota: a user who has used up
            // the free quota must still be able to upgrade. It counts against a small limit of
            // tier changes of its own instead, in the same gate.
            Route::Upgrade(id) => {
                user_route(req, env, path, false, events, class, move |req, caller, gate| async move {
                    // Admins change tiers as staff (support, billing) and are not limited here.
                    if caller.actor().is_admin() {
                        return users::upgrade(req, env, caller, gate, id, events).await;
                    }
                    match limits::admit_tier_change(env, caller.id.as_str(), gate.tier.as_str()).await? {
                        Admission::Refused(r) => Ok(r),
                        Admission::Admitted(_) => users::upgrade(req, env, caller, gate, id, events).await,
                    }
                })
            }
            Route::Insights(id) => user_route(req, env, path, true, events, class, move |_, caller, gate| {
                users::insights(env, caller, gate, id)
            }),
            Route::Export(id) => user_route(req, env, path, true, events, class, move |req, caller, gate| {
                rights::start_export(req, env, caller, id, gate.stepped_up_at)
            }),
            Route::ExportDownload(id, export_id) => {
                user_route(req, env, path, true, events, class, move |_, caller, _| {
                    rights::download_export(env, caller, id, export_id)
                })
            }
            Route::Erase(id) => user_route(req, env, path, true, events, class, move |req, caller, _| {
                rights::erase(req, env, caller, id)
            }),
            Route::Consents(id) => user_route(req, env, path, true, events, class, move |req, caller, _| {
                rights::consents(req, env, caller, id)
            }),
            // A parent's answer: limited per address like the signups it completes.
            Route::ParentalConsent => {
                ip_route(req, env, path, IpClass::Signup, move |req| rights::parental_consent(req, env))
            }
            // No session during the grace period (logins are refused): the password proves it,
            // counted like a login at the origin and limited per address like one here.
            Route::CancelErasure(id) => {
                ip_route(req, env, path, IpClass::Login, move |req| rights::cancel_erasure(req, env, id))
            }
            Route::Orgs(op) => user_route(req, env, path, true, events, class, move |req, caller, gate| {
                orgs::handle(req, env, caller, op, gate.stepped_up_at)
            }),
            // The provider's redirect carries no token (the state names the user): limited per
            // address like the logins it resembles.
            Route::Integrations(IntegrationOp::Callback(svc)) => {
                ip_route(req, env, path, IpClass::Login, move |req| integrations::callback(req, env, svc))
            }
            Route::Integrations(IntegrationOp::Catalogue) => {
                user_route(req, env, path, true, events, class, move |_, _, gate| async move {
                    integrations::catalogue(gate.tier)
                })
            }
            Route::Integrations(IntegrationOp::List(id)) => {
                user_route(req, env, path, true, events, class, move |_, caller, _| {
                    integrations::list(env, caller, id)
                })
            }
            Route::Integrations(IntegrationOp::Connect(id, svc)) => {
                user_route(req, env, path, true, events, class, move |_, caller, gate| {
                    integrations::connect(env, caller, gate.tier, id, svc)
                })
            }
            Route::Integrations(IntegrationOp::Disconnect(id, svc)) => {
                user_route(req, env, path, true, events, class, move |_, caller, _| {
                    integrations::disconnect(env, caller, id, svc)
                })
            }
            Route::Admin(what) => user_route(req, env, path, true, events, class, move |_, caller, _| {
                crate::admin::serve(env, caller, what)
            }),
            Route::Entitlements(op) => {
                Box::pin(crate::entitlements::handle(op, req, env, path, events, class))
            }
            Route::Personalisation(op) => {
                user_route(req, env, path, true, events, class, move |req, caller, gate| {
                    crate::personalisation::handle(req, env, caller, gate, op)
                })
            }
        }
    }
}

/// Admits a public request under its address's quota for `class`, runs `handler`, and sets
/// the limit's header fields on whatever it answers.
fn ip_route<'a, F, Fut>(req: Request, env: &'a Env, path: &'a str, class: IpClass, handler: F) -> Pending<'a>
where
    F: FnOnce(Request) -> Fut + 'a,
    Fut: std::future::Future<Output = Answer> + 'a,
{
    let handler: Box<dyn FnOnce(Request) -> Pending<'a> + 'a> = Box::new(move |req| Box::pin(handler(req)));
    Box::pin(ip_admitted(req, env, path, class, handler))
}

async fn ip_admitted<'a>(
    req: Request,
    env: &'a Env,
    path: &'a str,
    class: IpClass,
    handler: Box<dyn FnOnce(Request) -> Pending<'a> + 'a>,
) -> Answer {
    match limits::admit_ip(&req, env, class).await? {
        Admission::Refused(r) => Ok(r),
        Admission::Admitted(limit) => limits::finish(handler(req).await, &limit, class.name(), path),
    }
}

/// What a handler answers.
type Answer = std::result::Result<Response, EdgeError>;
/// A handler's answer still to come, boxed: every route's handler is its own function, called
/// through one admission compiled once (a generic admission would be compiled once per route
/// into the wasm, with the token check and the gate call inlined each time).
pub(crate) type Pending<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + 'a>>;
/// A protected route's handler, given the proven caller, the gate's answer and what was read
/// while the gate answered.
type Handler<'a> = Box<dyn FnOnce(Request, auth::Caller, GateAnswer, Prefetched) -> Pending<'a> + 'a>;
/// Work started with the gate call that needs the caller but not the gate's answer.
type Also<'a> = Box<
    dyn FnOnce(&auth::Caller) -> std::pin::Pin<Box<dyn std::future::Future<Output = Prefetched> + 'a>> + 'a,
>;

/// Admits a protected request (authentication and the gate's one call), runs `handler`, and
/// sets the limit's header fields on whatever it answers.
pub(crate) fn user_route<'a, F, Fut>(
    req: Request,
    env: &'a Env,
    path: &'a str,
    count: bool,
    events: &'a Events,
    class: &'a str,
    handler: F,
) -> Pending<'a>
where
    F: FnOnce(Request, auth::Caller, GateAnswer) -> Fut + 'a,
    Fut: std::future::Future<Output = Answer> + 'a,
{
    let handler: Handler<'a> = Box::new(move |req, caller, gate, _| Box::pin(handler(req, caller, gate)));
    Box::pin(admitted(req, env, path, count, events, class, None, handler))
}

/// Admits a protected request, with `also` run while the gate answers, and runs `handler`.
#[allow(clippy::too_many_arguments)]
async fn admitted<'a>(
    req: Request,
    env: &'a Env,
    path: &'a str,
    count: bool,
    events: &'a Events,
    class: &'a str,
    also: Option<Also<'a>>,
    handler: Handler<'a>,
) -> Answer {
    let prefetch = |caller: &auth::Caller| {
        let started = also.map(|also| also(caller));
        async move {
            match started {
                Some(fut) => fut.await,
                None => None,
            }
        }
    };
    let (caller, collects_events, admission) = limits::admit_user(&req, env, count, prefetch).await?;
    match admission {
        Admission::Refused(response) => {
            // A withdrawn `analytics` consent (the gate knows it): no usage event at all.
            if collects_events {
                events.record(
                    EventKind::RateLimited,
                    Some(caller.id.as_str()),
                    Some(class),
                    &RequestData { status: None, tier: caller.token_tier },
                );
            }
            Ok(response)
        }
        Admission::Admitted((gate, extra)) => {
            let limit = gate.limit;
            let policy = gate.tier.as_str();
            let user = caller.id.to_string();
            let answer =
                limits::finish(handler(req, caller, gate.clone(), extra).await, &limit, policy, path)?;
            if collects_events {
                events.record(
                    EventKind::ApiRequest,
                    Some(&user),
                    Some(class),
                    &RequestData { status: Some(answer.status_code()), tier: gate.tier },
                );
            }
            Ok(answer)
        }
    }
}

/// The request's method. workers-rs reads a method it has no name for (`QUERY`, `get`) as GET;
/// here such a method is one no route allows, so it gets the resource's 405 and `Allow`.
fn method_of(req: &Request) -> Method {
    let raw = req.inner().method();
    let method = Method::from(raw.clone());
    if method.as_ref() == raw {
        method
    } else {
        Method::Report
    }
}

pub(crate) fn only(method: &Method, allowed: &[Method]) -> std::result::Result<(), EdgeError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(not_allowed(allowed))
    }
}

pub(crate) fn not_allowed(allowed: &[Method]) -> EdgeError {
    let names: Vec<&str> = allowed.iter().map(|m| m.as_ref()).collect();
    EdgeError::Problem(
        Problem::new(ProblemKind::MethodNotAllowed, format!("allowed: {}", names.join(", ")))
            .with("allow", names.join(", ")),
    )
}

pub(crate) fn user_id(raw: &str) -> std::result::Result<UserId, EdgeError> {
    raw.parse().map_err(|_| EdgeError::new(ProblemKind::NotFound, format!("no user {raw}")))
}
