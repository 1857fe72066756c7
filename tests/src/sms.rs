//! A stand-in for a Twilio-compatible SMS provider: a real HTTP/1.1 server on a loopback port
//! that serves `POST /2010-04-01/Accounts/{sid}/Messages.json`, checks the basic auth and the
//! form fields, and records each text. A repeated `Idempotency-Key` is answered as before and
//! not recorded twice (as a provider that honours the key does).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use base64::Engine;

/// A text the provider accepted.
#[derive(Debug, Clone)]
pub struct Text {
    pub to: String,
    pub from: String,
    pub body: String,
    pub idempotency_key: String,
}

#[derive(Default)]
struct Record {
    texts: Vec<Text>,
    /// Requests refused (bad auth, missing field), as (status, reason).
    refused: Vec<(u16, String)>,
}

pub struct SmsProvider {
    port: u16,
    pub account_sid: String,
    pub auth_token: String,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SmsProvider {
    pub fn start(account_sid: &str, auth_token: &str) -> Result<Self> {
        let port = crate::free_port()?;
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let record: Arc<Mutex<Record>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let expected = (
            format!("/2010-04-01/Accounts/{account_sid}/Messages.json"),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{account_sid}:{auth_token}"))
            ),
        );
        let (r, s) = (Arc::clone(&record), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = serve(stream, &expected, &r);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Self {
            port,
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            record,
            stop,
            thread: Some(thread),
        })
    }

    /// `ORIGIN_SMS_URL` for this provider.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn texts(&self) -> Vec<Text> {
        self.record.lock().map(|r| r.texts.clone()).unwrap_or_default()
    }

    pub fn refused(&self) -> Vec<(u16, String)> {
        self.record.lock().map(|r| r.refused.clone()).unwrap_or_default()
    }

    /// Waits (up to `limit`) until `to` has received `n` texts; answers them.
    pub fn wait_for(&self, to: &str, n: usize, limit: Duration) -> Result<Vec<Text>> {
        let deadline = Instant::now() + limit;
        loop {
            let texts: Vec<Text> = self.texts().into_iter().filter(|t| t.to == to).collect();
            if texts.len() >= n {
                return Ok(texts);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{to} received {} of {n} texts in {limit:?} (refused: {:?})",
                texts.len(),
                self.refused()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmsProvider {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn form_value(form: &[(String, String)], name: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.push(b'%'),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One request (the client's connection is closed after the answer).
fn serve(stream: TcpStream, expected: &(String, String), record: &Mutex<Record>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let form: Vec<(String, String)> = body
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect();

    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let refusal = if method != "POST" || path != expected.0 {
        Some((404, format!("{method} {path}")))
    } else if header("authorization").as_deref() != Some(expected.1.as_str()) {
        Some((401, "authorization".to_owned()))
    } else if !header("content-type").unwrap_or_default().starts_with("application/x-www-form-urlencoded") {
        Some((415, "content-type".to_owned()))
    } else if ["To", "From", "Body"].iter().any(|f| form_value(&form, f).unwrap_or_default().is_empty()) {
        Some((400, format!("fields: {body}")))
    } else {
        None
    };
    let (status, answer) = match refusal {
        Some((status, reason)) => {
            if let Ok(mut r) = record.lock() {
                r.refused.push((status, reason));
            }
            (status, r#"{"code": 20003, "message": "refused"}"#.to_owned())
        }
        None => {
            let key = header("idempotency-key").unwrap_or_default();
            if let Ok(mut r) = record.lock() {
                if key.is_empty() || !r.texts.iter().any(|t| t.idempotency_key == key) {
                    r.texts.push(Text {
                        to: form_value(&form, "To").unwrap_or_default(),
                        from: form_value(&form, "From").unwrap_or_default(),
                        body: form_value(&form, "Body").unwrap_or_default(),
                        idempotency_key: key.clone(),
                    });
                }
            }
            (201, format!(r#"{{"sid": "SM{}", "status": "queued"}}"#, key.trim_start_matches("msg_")))
        }
    };
    let reason = match status {
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Unsupported Media Type",
    };
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    out.flush()
}
