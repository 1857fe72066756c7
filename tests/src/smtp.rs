//! A small SMTP server for the tests (an RFC 5321 subset: EHLO/HELO, MAIL, RCPT, DATA, RSET,
//! NOOP, QUIT; no TLS, no AUTH), on a loopback port, recording every message it accepts. It
//! can stop and start again on the same port, to play a mail server that is down for a while.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine;

/// A message as the server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The DATA, dot-unstuffed, lines joined by CRLF.
    pub data: String,
}

impl Mail {
    /// A header's value (the first one named `name`, case-insensitive, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push_str(line.trim_start());
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    value = Some(v.trim().to_owned());
                }
            }
        }
        value
    }

    /// The body, decoded from its transfer encoding (7bit, quoted-printable or base64).
    pub fn body(&self) -> String {
        let raw = self.data.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        let encoding = self.header("Content-Transfer-Encoding").unwrap_or_default().to_ascii_lowercase();
        match encoding.as_str() {
            "base64" => {
                let joined: String = raw.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD.decode(joined).unwrap_or_default();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            "quoted-printable" => decode_quoted_printable(raw),
            _ => raw.to_owned(),
        }
    }

    /// The subject, its RFC 2047 encoded words (UTF-8, B or Q) decoded; the whitespace
    /// between two encoded words is dropped, as the RFC says.
    pub fn subject(&self) -> String {
        let raw = self.header("Subject").unwrap_or_default();
        let mut out = String::new();
        let mut previous_encoded = false;
        for (i, word) in raw.split_whitespace().enumerate() {
            let inner = word.strip_prefix("=?").and_then(|w| w.strip_suffix("?="));
            let decoded = inner.map(|inner| {
                let mut parts = inner.splitn(3, '?');
                let (_, enc, text) =
                    (parts.next(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                if enc.eq_ignore_ascii_case("b") {
                    let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_default();
                    String::from_utf8_lossy(&bytes).into_owned()
                } else {
                    decode_quoted_printable(&text.replace('_', " "))
                }
            });
            if i > 0 && !(previous_encoded && decoded.is_some()) {
                out.push(' ');
            }
            previous_encoded = decoded.is_some();
            out.push_str(&decoded.unwrap_or_else(|| word.to_owned()));
        }
        out
    }
}

fn decode_quoted_printable(s: &str) -> String {
    let bytes = s.replace("=\r\n", "").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The running (or stopped) server.
pub struct SmtpServer {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
}

impl SmtpServer {
    /// Starts on a free loopback port.
    pub fn start() -> Result<Self> {
        let mut server = Self {
            port: crate::free_port()?,
            mails: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
            listener: None,
        };
        server.resume()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ORIGIN_SMTP_URL` for this server.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Starts listening again on the same port (after [`Self::pause`]).
    pub fn resume(&mut self) -> Result<()> {
        if self.listener.is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(("127.0.0.1", self.port)).context("binding the SMTP port")?;
        listener.set_nonblocking(true)?;
        self.stop.store(false, Ordering::SeqCst);
        let (stop, mails) = (Arc::clone(&self.stop), Arc::clone(&self.mails));
        self.listener = Some(std::thread::spawn(move || {
            let mut sessions = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let mails = Arc::clone(&mails);
                        sessions.push(std::thread::spawn(move || {
                            let _ = session(stream, &mails);
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            drop(listener);
            for s in sessions {
                let _ = s.join();
            }
        }));
        Ok(())
    }

    /// Stops listening (connections are refused) until [`Self::resume`].
    pub fn pause(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.listener.take() {
            let _ = thread.join();
        }
    }

    /// Every message received so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The messages to `to`.
    pub fn mails_to(&self, to: &str) -> Vec<Mail> {
        self.mails().into_iter().filter(|m| m.to.iter().any(|t| t == to)).collect()
    }

    /// Waits (up to `limit`) until `to` has received `n` messages; answers them.
    pub fn wait_for(&self, to: &str, n: usize, limit: Duration) -> Result<Vec<Mail>> {
        let deadline = Instant::now() + limit;
        loop {
            let mails = self.mails_to(to);
            if mails.len() >= n {
                return Ok(mails);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{to} received {} of {n} messages in {limit:?}",
                mails.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.pause();
    }
}

fn address(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].trim().to_owned()
}

/// One SMTP session.
fn session(stream: TcpStream, mails: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 127.0.0.1 ESMTP e2e test server\r\n")?;
    let (mut from, mut to): (Option<String>, Vec<String>) = (None, Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let verb = command.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-127.0.0.1 greets you\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 127.0.0.1\r\n",
            "MAIL" => {
                from = Some(address(&command[4..]));
                to.clear();
                b"250 2.1.0 OK\r\n"
            }
            "RCPT" if from.is_some() => {
                to.push(address(&command[4..]));
                b"250 2.1.5 OK\r\n"
            }
            "RCPT" => b"503 5.5.1 MAIL first\r\n",
            "DATA" if from.is_some() && !to.is_empty() => {
                out.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
                let mut data = Vec::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    let l = line.trim_end_matches(['\r', '\n']);
                    if l == "." {
                        break;
                    }
                    data.push(l.strip_prefix('.').unwrap_or(l).to_owned());
                }
                let mail = Mail {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data: data.join("\r\n"),
                };
                if let Ok(mut all) = mails.lock() {
                    all.push(mail);
                }
                b"250 2.0.0 queued\r\n"
            }
            "DATA" => b"503 5.5.1 MAIL and RCPT first\r\n",
            "RSET" => {
                from = None;
                to.clear();
                b"250 2.0.0 OK\r\n"
            }
            "NOOP" => b"250 2.0.0 OK\r\n",
            "QUIT" => {
                out.write_all(b"221 2.0.0 bye\r\n")?;
                return Ok(());
            }
            _ => b"502 5.5.2 command not recognised\r\n",
        };
        out.write_all(reply)?;
    }
}
