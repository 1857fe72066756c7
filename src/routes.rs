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

    async fn handle(
        self,
        req: Request,
        env: &Env,
        path: &str,
        events: &Events,
    ) -> std::result::Result<Response, EdgeError> {
        let class = self.class();
        match self {
            // Public: limited per address, and answered from a short cache (see `health.rs`).
            Route::Health => match limits::admit_ip(&req, env, IpClass::Health).await? {
                Admission::Refused(r) => Ok(r),
                Admission::Admitted(limit) => {
                    limits::finish(Ok(health::handle(env).await?), &limit, "ip-health", path)
                }
            },
            Route::Jwks => crate::http::reply(200, &auth::jwks(env)?),
            Route::OpenApi => Err(openapi::missing()),
            Route::Login => match limits::admit_ip(&req, env, IpClass::Login).await? {
                Admission::Refused(r) => Ok(r),
                Admission::Admitted(limit) => {
                    limits::finish(sessions::login(req, env, events).await, &limit, "ip-login", path)
                }
            },
            // Token introspection for its holder: a token whose session was revoked is not valid,
            // so the gate is asked (checked, not counted), as for every protected request.
            Route::Token => {
                user_route(req, env, path, false, events, class, |_, caller, _| async move {
                    sessions::introspect(&caller)
                })
                .await
            }
            // The second step of a login counts against the same per-address login quota.
            Route::Mfa => match limits::admit_ip(&req, env, IpClass::Login).await? {
                Admission::Refused(r) => Ok(r),
                Admission::Admitted(limit) => {
                    limits::finish(sessions::complete_mfa(req, env, events).await, &limit, "ip-login", path)
                }
            },
            // Activation sets a password: limited like the signups it stands for.
            Route::Activate => match limits::admit_ip(&req, env, IpClass::Signup).await? {
                Admission::Refused(r) => Ok(r),
                Admission::Admitted(limit) => {
                    limits::finish(sessions::activate(req, env).await, &limit, "ip-signup", path)
                }
            },
            // Account recovery: limited per address; the origin limits codes per account.
            Route::ForgotPassword | Route::ResetPassword | Route::VerifyEmail => {
                match limits::admit_ip(&req, env, IpClass::Recovery).await? {
                    Admission::Refused(r) => Ok(r),
                    Admission::Admitted(limit) => {
                        let answer = match self {
                            Route::ForgotPassword => sessions::forgot_password(req, env).await,
                            Route::ResetPassword => sessions::reset_password(req, env).await,
                            _ => users::verify_email(req, env).await,
                        };
                        limits::finish(answer, &limit, "ip-recovery", path)
                    }
                }
            }
            Route::ResendVerification(id) => {
                user_route(req, env, path, true, events, class, |_, caller, _| {
                    users::resend_verification(env, caller, id)
                })
                .await
            }
            Route::MfaSend => match limits::admit_ip(&req, env, IpClass::Login).await? {
                Admission::Refused(r) => Ok(r),
                Admission::Admitted(limit) => {
                    limits::finish(sessions::send_code(req, env).await, &limit, "ip-login", path)
                }
            },
            // The passwordless ceremony and the second factor's options count against the
            // per-address login quota, like the logins they stand for.
            Route::PasskeyOptions => match limits::admit_ip(&req, env, IpClass::Login).await? {
                Admission::Refused(r) => Ok(r),
                Admission::Admitted(limit) => {
                    limits::finish(passkeys::login_options(env).await, &limit, "ip-login", path)
                }
            },
            Route::PasskeyLogin => match limits::admit_ip(&req, env, IpClass::Login).await? {
                Admission::Refused(r) => Ok(r),
                Admission::Admitted(limit) => {
                    limits::finish(passkeys::login(req, env, events).await, &limit, "ip-login", path)
                }
            },
            Route::MfaWebauthn => match limits::admit_ip(&req, env, IpClass::Login).await? {
                Admission::Refused(r) => Ok(r),
                Admission::Admitted(limit) => {
                    limits::finish(passkeys::mfa_options(req, env).await, &limit, "ip-login", path)
                }
            },
            Route::Passkeys(id, op) => {
                user_route(req, env, path, true, events, class, |req, caller, gate| {
                    passkeys::account(req, env, caller, id, op, gate.stepped_up_at)
                })
                .await
            }
            Route::SetDisabled(id, disabled) => {
                user_route(req, env, path, true, events, class, |_, caller, _| {
                    sessions::set_disabled(env, caller, id, disabled)
                })
                .await
            }
            Route::Security(id, op) => {
                user_route(req, env, path, true, events, class, |req, caller, gate| {
                    sessions::account_security(req, env, caller, id, op, gate.stepped_up_at)
                })
                .await
            }
            Route::StepUp => {
                user_route(req, env, path, true, events, class, |req, caller, _| {
                    sessions::step_up(req, env, caller)
                })
                .await
            }
            Route::Refresh => match limits::admit_ip(&req, env, IpClass::Refresh).await? {
                Admission::Refused(r) => Ok(r),
                Admission::Admitted(limit) => {
                    limits::finish(sessions::refresh(req, env).await, &limit, "ip-refresh", path)
                }
            },
            Route::Logout => {
                user_route(req, env, path, true, events, class, |_, caller, _| sessions::logout(env, caller))
                    .await
            }
            Route::Sessions(id) => {
                user_route(req, env, path, true, events, class, |_, caller, _| {
                    sessions::list(env, caller, id)
                })
                .await
            }
            Route::DeleteSession(id, sid) => {
                user_route(req, env, path, true, events, class, |_, caller, _| {
                    sessions::delete(env, caller, id, sid)
                })
                .await
            }
            Route::ChangePassword(id) => {
                user_route(req, env, path, true, events, class, |req, caller, _| {
                    sessions::change_password(req, env, caller, id)
                })
                .await
            }
            Route::StartEmailChange(id) => {
                user_route(req, env, path, true, events, class, |req, caller, _| {
                    users::start_email_change(req, env, caller, id)
                })
                .await
            }
            Route::ConfirmEmailChange(id) => {
                user_route(req, env, path, true, events, class, |req, caller, _| {
                    users::confirm_email_change(req, env, caller, id, events)
                })
                .await
            }
            Route::CreateUser => {
                // An admin creating accounts spends their own quota; a public signup the
                // address's signup quota.
                if auth::authenticate_optional(&req, env).await?.is_some() {
                    user_route(req, env, path, true, events, class, |req, caller, _| {
                        users::create(req, env, Some(caller))
                    })
                    .await
                } else {
                    match limits::admit_ip(&req, env, IpClass::Signup).await? {
                        Admission::Refused(r) => Ok(r),
                        Admission::Admitted(limit) => {
                            limits::finish(users::create(req, env, None).await, &limit, "ip-signup", path)
                        }
                    }
                }
            }
            // The cache entry of one's own profile is read while the gate answers; whether it
            // may be served is decided after both (its version against the gate's).
            Route::ReadUser(id) => {
                let target = id.clone();
                let also = move |caller: &auth::Caller| {
                    let own = caller.id == target;
                    let key = target.to_string();
                    async move {
                        if own {
                            Some(crate::profile_cache::get(env, &key).await)
                        } else {
                            None
                        }
                    }
                };
                user_route_with(req, env, path, true, events, class, also, |req, caller, gate, prefetched| {
                    users::read(req, env, caller, gate, id, prefetched)
                })
                .await
            }
            Route::UpdateUser(id) => {
                user_route(req, env, path, true, events, class, |req, caller, gate| {
                    users::update(req, env, caller, id, gate.stepped_up_at, events)
                })
                .await
            }
            // A tier change is checked but not counted against the quota: a user who has used up
            // the free quota must still be able to upgrade. It counts against a small limit of
            // tier changes of its own instead, in the same gate.
            Route::Upgrade(id) => {
                user_route(req, env, path, false, events, class, |req, caller, gate| async move {
                    // Admins change tiers as staff (support, billing) and are not limited here.
                    if caller.actor().is_admin() {
                        return users::upgrade(req, env, caller, gate, id, events).await;
                    }
                    match limits::admit_tier_change(env, caller.id.as_str(), gate.tier.as_str()).await? {
                        Admission::Refused(r) => Ok(r),
                        Admission::Admitted(_) => users::upgrade(req, env, caller, gate, id, events).await,
                    }
                })
                .await
            }
            Route::Insights(id) => {
                user_route(req, env, path, true, events, class, |_, caller, gate| {
                    users::insights(env, caller, gate, id)
                })
                .await
            }
            Route::Export(id) => {
                user_route(req, env, path, true, events, class, |req, caller, gate| {
                    rights::start_export(req, env, caller, id, gate.stepped_up_at)
                })
                .await
            }
            Route::ExportDownload(id, export_id) => {
                user_route(req, env, path, true, events, class, |_, caller, _| {
                    rights::download_export(env, caller, id, export_id)
                })
                .await
            }
            Route::Erase(id) => {
                user_route(req, env, path, true, events, class, |req, caller, _| {
                    rights::erase(req, env, caller, id)
                })
                .await
            }
            Route::Consents(id) => {
                user_route(req, env, path, true, events, class, |req, caller, _| {
                    rights::consents(req, env, caller, id)
                })
                .await
            }
            // A parent's answer: limited per address like the signups it completes.
            Route::ParentalConsent => match limits::admit_ip(&req, env, IpClass::Signup).await? {
                Admission::Refused(r) => Ok(r),
                Admission::Admitted(limit) => {
                    limits::finish(rights::parental_consent(req, env).await, &limit, "ip-signup", path)
                }
            },
            // No session during the grace period (logins are refused): the password proves it,
            // counted like a login at the origin and limited per address like one here.
            Route::CancelErasure(id) => match limits::admit_ip(&req, env, IpClass::Login).await? {
                Admission::Refused(r) => Ok(r),
                Admission::Admitted(limit) => {
                    limits::finish(rights::cancel_erasure(req, env, id).await, &limit, "ip-login", path)
                }
            },
            Route::Orgs(op) => {
                user_route(req, env, path, true, events, class, |req, caller, gate| {
                    orgs::handle(req, env, caller, op, gate.stepped_up_at)
                })
                .await
            }
            // The provider's redirect carries no token (the state names the user): limited per
            // address like the logins it resembles.
            Route::Integrations(IntegrationOp::Callback(svc)) => {
                match limits::admit_ip(&req, env, IpClass::Login).await? {
                    Admission::Refused(r) => Ok(r),
                    Admission::Admitted(limit) => {
                        limits::finish(integrations::callback(req, env, svc).await, &limit, "ip-login", path)
                    }
                }
            }
            Route::Integrations(IntegrationOp::Catalogue) => {
                user_route(req, env, path, true, events, class, |_, _, gate| async move {
                    integrations::catalogue(gate.tier)
                })
                .await
            }
            Route::Integrations(IntegrationOp::List(id)) => {
                user_route(req, env, path, true, events, class, |_, caller, _| {
                    integrations::list(env, caller, id)
                })
                .await
            }
            Route::Integrations(IntegrationOp::Connect(id, svc)) => {
                user_route(req, env, path, true, events, class, |_, caller, gate| {
                    integrations::connect(env, caller, gate.tier, id, svc)
                })
                .await
            }
            Route::Integrations(IntegrationOp::Disconnect(id, svc)) => {
                user_route(req, env, path, true, events, class, |_, caller, _| {
                    integrations::disconnect(env, caller, id, svc)
                })
                .await
            }
            Route::Admin(what) => {
                user_route(req, env, path, true, events, class, |_, caller, _| {
                    crate::admin::serve(env, caller, what)
                })
                .await
            }
            Route::Entitlements(op) => crate::entitlements::handle(op, req, env, path, events, class).await,
            Route::Personalisation(op) => {
                user_route(req, env, path, true, events, class, |req, caller, gate| {
                    crate::personalisation::handle(req, env, caller, gate, op)
                })
                .await
            }
        }
    }
}

/// Admits a protected request (authentication and the gate's one call), runs `handler`, and
/// sets the limit's header fields on whatever it answers.
pub(crate) async fn user_route<F, Fut>(
    req: Request,
    env: &Env,
    path: &str,
    count: bool,
    events: &Events,
    class: &str,
    handler: F,
) -> std::result::Result<Response, EdgeError>
where
    F: FnOnce(Request, auth::Caller, crate::gate::GateAnswer) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<Response, EdgeError>>,
{
    user_route_with(req, env, path, count, events, class, no_prefetch, |req, caller, gate, ()| {
        handler(req, caller, gate)
    })
    .await
}

/// The `also` of a route that reads nothing while the gate answers. A named function, not a
/// closure inside [`user_route`]: a closure would be a new type for every route, and the whole
/// admission (token check, gate call) would be compiled once per route into the wasm.
fn no_prefetch(_: &auth::Caller) -> std::future::Ready<()> {
    std::future::ready(())
}

/// [`user_route`], with `also` run while the gate answers and its result given to `handler`.
#[allow(clippy::too_many_arguments)]
async fn user_route_with<A, AFut, T, F, Fut>(
    req: Request,
    env: &Env,
    path: &str,
    count: bool,
    events: &Events,
    class: &str,
    also: A,
    handler: F,
) -> std::result::Result<Response, EdgeError>
where
    A: FnOnce(&auth::Caller) -> AFut,
    AFut: std::future::Future<Output = T>,
    F: FnOnce(Request, auth::Caller, crate::gate::GateAnswer, T) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<Response, EdgeError>>,
{
    let (caller, collects_events, admission) = limits::admit_user(&req, env, count, also).await?;
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
            // Boxed: each handler's state machine stays its own function instead of being
            // inlined into one dispatch future that holds every route's states (wasm size).
            let handled: std::pin::Pin<Box<dyn std::future::Future<Output = _> + '_>> =
                Box::pin(handler(req, caller, gate.clone(), extra));
            let answer = limits::finish(handled.await, &limit, policy, path)?;
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
