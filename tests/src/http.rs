//! A small blocking HTTP client for the tests, with the signing the origin requires.

use std::time::Duration;

use anyhow::{Context, Result};
use domain::signing::{
    SharedSecret, SignedRequest, HEADER_ACTOR, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use domain::time::UnixMillis;
use reqwest::blocking::{Client, Response};

pub fn client() -> Client {
    Client::builder().timeout(Duration::from_secs(30)).no_proxy().build().unwrap_or_else(|_| Client::new())
}

pub fn get_status(url: &str) -> Result<u16> {
    Ok(client().get(url).timeout(Duration::from_secs(2)).send()?.status().as_u16())
}

pub fn now() -> UnixMillis {
    UnixMillis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// A request to the origin's internal API, signed the way the edge signs it, with every part
/// overridable so tests can tamper with one thing at a time.
pub struct SignedCall {
    pub method: &'static str,
    pub path: String,
    pub body: Vec<u8>,
    pub actor: String,
    pub timestamp: UnixMillis,
    pub nonce: String,
}

impl SignedCall {
    pub fn new(method: &'static str, path: &str, body: &[u8]) -> Self {
        let nonce = format!("{:032x}", rand_u128());
        Self {
            method,
            path: path.to_owned(),
            body: body.to_vec(),
            actor: "system".to_owned(),
            timestamp: now(),
            nonce,
        }
    }

    /// The three signature headers for this call under `secret`.
    pub fn headers(&self, secret: &SharedSecret) -> [(&'static str, String); 4] {
        let sig = SignedRequest {
            method: self.method,
            path_and_query: &self.path,
            actor: &self.actor,
            body: &self.body,
        }
        .sign(secret, self.timestamp, &self.nonce);
        [
            (HEADER_TIMESTAMP, sig.timestamp.0.to_string()),
            (HEADER_NONCE, sig.nonce),
            (HEADER_SIGNATURE, sig.signature),
            (HEADER_ACTOR, self.actor.clone()),
        ]
    }

    /// Sends to `base` with `headers` (usually `self.headers(..)`, possibly altered) and
    /// `body_sent` (usually `self.body`).
    pub fn send_raw(
        &self,
        base: &str,
        headers: &[(&'static str, String)],
        body_sent: &[u8],
    ) -> Result<Response> {
        let method = reqwest::Method::from_bytes(self.method.as_bytes())?;
        let mut request = client().request(method, format!("{base}{}", self.path)).body(body_sent.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().context("sending a signed call")
    }

    pub fn send(&self, base: &str, secret: &SharedSecret) -> Result<Response> {
        self.send_raw(base, &self.headers(secret), &self.body)
    }
}

fn rand_u128() -> u128 {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    u128::from_le_bytes(bytes)
}
