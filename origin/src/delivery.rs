//! The senders that deliver the outbox's messages, behind one trait: the local file (the
//! default: JSON lines that development and the tests read), SMTP (lettre; plain on loopback,
//! STARTTLS or implicit TLS elsewhere, per `ORIGIN_SMTP_URL`), and a Twilio-compatible SMS
//! Messages API over HTTPS (`ORIGIN_SMS_URL` with an account sid and auth token). Which one
//! carries each channel is configuration; the outbox (`outbox.rs`) decides when to try.
//!
//! A sender answers whether the provider took the message, or why not: a temporary failure
//! (down, timeout, 4xx of SMTP, 429/5xx of HTTP) is retried, a permanent one (a refused
//! address) is not. The error kept is a short kind (`smtp 550`, `connect`), never the
//! provider's text, which may quote the address.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use domain::delivery::ATTEMPT_TIMEOUT_MS;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};

/// A message as the sender sees it (unsealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The outbox id: the idempotency key the provider sees.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub channel: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    /// A one-time code in the text, also recorded apart in the local file (tools read it).
    pub code: Option<String>,
    pub language: String,
    #[serde(default)]
    pub created_at: u64,
    /// The display name of the sender when it is not the platform's: an organization's white
    /// label (`domain::org::Branding`, checked to hold no address syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
}

/// The `From` mailbox of `m`: the platform's address, under the sender name `m` carries.
fn from_mailbox(platform: &Mailbox, m: &Message) -> Mailbox {
    match &m.sender_name {
        Some(name) => Mailbox::new(Some(name.clone()), platform.email.clone()),
        None => platform.clone(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("temporary: {0}")]
    Temporary(String),
    #[error("permanent: {0}")]
    Permanent(String),
}

impl SendError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Permanent(_))
    }

    pub fn kind(&self) -> &str {
        match self {
            SendError::Temporary(k) | SendError::Permanent(k) => k,
        }
    }
}

#[async_trait]
pub trait Sender: Send + Sync {
    async fn send(&self, message: &Message) -> Result<(), SendError>;
    /// For the logs: `file`, `smtp`, `sms-http`.
    fn name(&self) -> &'static str;
}

/// The local sender: appends each message as a JSON line, flushed to disk, readable by the
/// origin's user only. A message the outbox retries after a crash may appear twice; its `id`
/// tells.
pub struct FileSender {
    path: PathBuf,
    lock: std::sync::Mutex<()>,
}

impl FileSender {
    pub fn new(path: PathBuf) -> Self {
        Self { path, lock: std::sync::Mutex::new(()) }
    }
}

#[async_trait]
impl Sender for FileSender {
    async fn send(&self, m: &Message) -> Result<(), SendError> {
        let line = serde_json::json!({
            "id": m.id, "channel": m.channel, "to": m.to, "subject": m.subject, "text": m.text,
            "code": m.code, "language": m.language, "at": m.created_at, "sender_name": m.sender_name,
        })
        .to_string();
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        // One write of the whole line (O_APPEND): several origins appending to one file do not
        // interleave within a line.
        let written = options.open(&self.path).and_then(|mut file| {
            file.write_all(format!("{line}\n").as_bytes())?;
            file.sync_data()
        });
        written.map_err(|e| {
            tracing::warn!(path = %self.path.display(), error = %e, "the local outbox file could not be written");
            SendError::Temporary("file".into())
        })
    }

    fn name(&self) -> &'static str {
        "file"
    }
}

/// How an SMTP server is reached, from `ORIGIN_SMTP_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No TLS: only to a loopback host.
    Plain,
    /// STARTTLS, required (`smtp://…?tls=starttls`).
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpEndpoint {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost" || bare.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

impl SmtpEndpoint {
    /// `smtp://[user:pass@]host[:port][?tls=starttls|none]` or `smtps://…`. Plain SMTP (no
    /// TLS) is accepted only to a loopback host: elsewhere a password and one-time codes
    /// would cross the network in clear.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw.trim()).map_err(|e| format!("not a URL ({e})"))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("names no host")?.to_owned();
        let tls = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.to_ascii_lowercase());
        let security = match (url.scheme(), tls.as_deref()) {
            ("smtps", None | Some("implicit" | "wrapper")) => SmtpSecurity::Implicit,
            ("smtp", Some("starttls" | "required")) => SmtpSecurity::StartTls,
            ("smtp", None | Some("none")) => SmtpSecurity::Plain,
            (scheme @ ("smtp" | "smtps"), Some(other)) => {
                return Err(format!(
                    "tls={other} is not a choice for {scheme}:// (starttls, none; smtps:// is TLS)"
                ))
            }
            (other, _) => return Err(format!("the scheme must be smtp or smtps, not {other}")),
        };
        if security == SmtpSecurity::Plain && !is_loopback(&host) {
            return Err(
                "plain SMTP is allowed only to a loopback host; use smtps:// or ?tls=starttls".to_owned()
            );
        }
        let port = url.port().unwrap_or(match security {
            SmtpSecurity::Implicit => 465,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Plain => 25,
        });
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned())
        };
        let username = Some(url.username()).filter(|u| !u.is_empty()).and_then(decode);
        let password = url.password().and_then(decode);
        Ok(Self { host, port, security, username, password })
    }
}

/// Email over SMTP.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The domain of Message-IDs (`<outbox id@domain>`), from the sender's address.
    id_domain: String,
}

impl SmtpSender {
    pub fn new(endpoint: &SmtpEndpoint, from: &str) -> Result<Self, String> {
        let from: Mailbox =
            from.parse().map_err(|e| format!("the sender address {from:?} is invalid ({e})"))?;
        let tls_parameters =
            || TlsParameters::new(endpoint.host.clone()).map_err(|e| format!("TLS parameters: {e}"));
        let tls = match endpoint.security {
            SmtpSecurity::Plain => Tls::None,
            SmtpSecurity::StartTls => Tls::Required(tls_parameters()?),
            SmtpSecurity::Implicit => Tls::Wrapper(tls_parameters()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(endpoint.host.clone())
            .port(endpoint.port)
            .tls(tls)
            .timeout(Some(Duration::from_millis(ATTEMPT_TIMEOUT_MS)));
        if let (Some(user), Some(password)) = (&endpoint.username, &endpoint.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let id_domain = from.email.domain().to_owned();
        Ok(Self { transport: builder.build(), from, id_domain })
    }
}

#[async_trait]
impl Sender for SmtpSender {
    async fn send(&self, m: &Message) -> Result<(), SendError> {
        let to: Mailbox = m.to.parse().map_err(|_| SendError::Permanent("address".into()))?;
        let email = lettre::Message::builder()
            .message_id(Some(format!("<{}@{}>", m.id, self.id_domain)))
            .from(from_mailbox(&self.from, m))
            .to(to)
            .subject(m.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(m.text.clone())
            .map_err(|_| SendError::Permanent("message".into()))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let kind =
                    e.status().map_or_else(|| "smtp connect".to_owned(), |code| format!("smtp {code}"));
                if e.is_permanent() {
                    Err(SendError::Permanent(kind))
                } else {
                    Err(SendError::Temporary(kind))
                }
            }
        }
    }

    fn name(&self) -> &'static str {
        "smtp"
    }
}

/// SMS through a Twilio-compatible Messages API: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`
/// with `To`, `From`, `Body` form-encoded, HTTP basic auth `sid:token`, and the outbox id as
/// `Idempotency-Key`.
pub struct SmsHttpSender {
    client: reqwest::Client,
    endpoint: String,
    account_sid: String,
    auth_token: String,
    from: String,
}

impl SmsHttpSender {
    pub fn new(base_url: &str, account_sid: &str, auth_token: &str, from: &str) -> Result<Self, String> {
        domain::net::check_origin_url(base_url).map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(ATTEMPT_TIMEOUT_MS))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let endpoint =
            format!("{}/2010-04-01/Accounts/{account_sid}/Messages.json", base_url.trim_end_matches('/'));
        Ok(Self {
            client,
            endpoint,
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            from: from.to_owned(),
        })
    }
}

#[async_trait]
impl Sender for SmsHttpSender {
    async fn send(&self, m: &Message) -> Result<(), SendError> {
        let answer = self
            .client
            .post(&self.endpoint)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header("Idempotency-Key", &m.id)
            .form(&[("To", m.to.as_str()), ("From", self.from.as_str()), ("Body", m.text.as_str())])
            .send()
            .await
            .map_err(|e| {
                SendError::Temporary(if e.is_timeout() { "sms timeout" } else { "sms connect" }.into())
            })?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else if status.as_u16() == 429 || status.is_server_error() {
            Err(SendError::Temporary(format!("sms http {}", status.as_u16())))
        } else {
            Err(SendError::Permanent(format!("sms http {}", status.as_u16())))
        }
    }

    fn name(&self) -> &'static str {
        "sms-http"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_organizations_mail_keeps_the_platforms_address_under_its_own_name() {
        let platform: Mailbox = "Music AI <no-reply@example.com>".parse().unwrap();
        let mut m = Message {
            id: "msg_1".into(),
            channel: "email".into(),
            to: "a@example.com".into(),
            subject: "s".into(),
            text: "t".into(),
            code: None,
            language: "en".into(),
            created_at: 0,
            sender_name: None,
        };
        assert_eq!(from_mailbox(&platform, &m), platform);
        m.sender_name = Some("Acme Music".into());
        let from = from_mailbox(&platform, &m);
        assert_eq!(from.to_string(), "Acme Music <no-reply@example.com>");
    }

    #[test]
    fn smtp_urls_choose_the_transport_and_refuse_plain_smtp_off_loopback() {
        let e = SmtpEndpoint::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.security.clone()), ("127.0.0.1", 2525, SmtpSecurity::Plain));
        let e = SmtpEndpoint::parse("smtp://mailer:p%40ss@mail.example.com?tls=starttls").unwrap();
        assert_eq!((e.port, e.security.clone()), (587, SmtpSecurity::StartTls));
        assert_eq!((e.username.as_deref(), e.password.as_deref()), (Some("mailer"), Some("p@ss")));
        let e = SmtpEndpoint::parse("smtps://mail.example.com").unwrap();
        assert_eq!((e.port, e.security), (465, SmtpSecurity::Implicit));
        assert!(SmtpEndpoint::parse("smtp://mail.example.com").unwrap_err().contains("loopback"));
        assert!(SmtpEndpoint::parse("smtp://localhost:25?tls=maybe").is_err());
        assert!(SmtpEndpoint::parse("http://127.0.0.1").is_err());
    }

    #[test]
    fn sms_providers_need_https_unless_on_loopback() {
        assert!(SmsHttpSender::new("http://127.0.0.1:9000", "AC1", "t", "+15550000000").is_ok());
        assert!(SmsHttpSender::new("https://api.twilio.com", "AC1", "t", "+15550000000").is_ok());
        assert!(SmsHttpSender::new("http://api.example.com", "AC1", "t", "+15550000000").is_err());
    }
}
