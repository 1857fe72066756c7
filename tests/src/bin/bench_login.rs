//! The login benchmark (a command, not a test): measures, in one run, bare argon2id
//! verification with the product's parameters on this machine (one thread per core, the
//! ceiling any login rate can reach), then full logins through the edge (wrangler dev/workerd,
//! the release origin, SQLite) at 2, 8 and 64 connections with a correct password on one
//! account from random client addresses, and prints the rate, the ratio to bare argon2id, the
//! latency, how many were told to retry (503), and the origin's peak resident memory (VmHWM,
//! read from `/proc`). Run it with `scripts/bench-login`.

// A command-line tool: a failed step ends it with a message, which is what a panic gives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use domain::signing::SharedSecret;
use e2e::api::{unique_email, Api, GOOD_PASSWORD};
use e2e::http::{client, SignedCall};
use e2e::Stack;
use serde_json::json;

const SECONDS: u64 = 10;

fn argon2() -> Argon2<'static> {
    // The product's parameters (origin/src/passwords.rs): OWASP's m = 19456 KiB, t = 2, p = 1.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(19_456, 2, 1, Some(32)).unwrap())
}

/// Bare argon2id verifications per second on `threads` threads.
fn bare_argon2(threads: usize) -> f64 {
    let phc = argon2()
        .hash_password(b"correct horse battery staple", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let parsed = PasswordHash::new(&phc).unwrap();
                let hasher = argon2();
                while !stop.load(Ordering::Relaxed) {
                    assert!(hasher.verify_password(b"correct horse battery staple", &parsed).is_ok());
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

struct Round {
    ok_per_sec: f64,
    busy: usize,
    /// Answers other than 200 and 503, by status (0: no answer).
    other: std::collections::BTreeMap<u16, usize>,
    p50_ms: f64,
    p99_ms: f64,
}

/// Where a round's logins go.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// The public API, through the edge (`POST /api/v1/auth/login`).
    Edge(&'a Api),
    /// The origin's internal call the edge makes for a login (`POST /internal/auth/verify`,
    /// signed as the edge signs it): the origin's share of a login, with no edge around it.
    Origin { base: &'a str, secret: &'a SharedSecret },
}

fn login_once(target: Target, http: &reqwest::blocking::Client, email: &str, device: &str, ip: &str) -> u16 {
    match target {
        Target::Edge(api) => http
            .post(api.url("/api/v1/auth/login"))
            .header("cf-connecting-ip", ip)
            .json(&json!({"email": email, "password": GOOD_PASSWORD, "device_token": device}))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0),
        Target::Origin { base, secret } => {
            let body = json!({
                "email": email, "password": GOOD_PASSWORD, "device_token": device,
                "context": { "ip": ip, "country": null, "user_agent": "bench-login" },
            });
            let mut call = SignedCall::new("POST", "/internal/auth/verify", body.to_string().as_bytes());
            call.actor = "anonymous".to_owned();
            let mut request = http.post(format!("{base}{}", call.path)).body(call.body.clone());
            for (name, value) in call.headers(secret) {
                request = request.header(name, value);
            }
            request
                .header("content-type", "application/json")
                .send()
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    }
}

fn logins(target: Target, email: &str, device: &str, connections: usize, seconds: u64) -> Round {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let results: Vec<(u16, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|c| {
                scope.spawn(move || {
                    let http = client();
                    let mut own = Vec::new();
                    let mut n: u32 = 0;
                    while Instant::now() < deadline {
                        n += 1;
                        // A different client address every time (documentation ranges), as many
                        // users' devices would be; the per-address limits are raised for this.
                        let ip = format!("2001:db8:{c:x}:{n:x}::1");
                        let t = Instant::now();
                        let status = login_once(target, &http, email, device, &ip);
                        own.push((status, t.elapsed()));
                    }
                    own
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let busy = results.iter().filter(|(s, _)| *s == 503).count();
    let mut latencies: Vec<f64> = results.iter().map(|(_, d)| d.as_secs_f64() * 1000.0).collect();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Round {
        ok_per_sec: ok as f64 / elapsed,
        busy,
        other: results.iter().filter(|(s, _)| *s != 200 && *s != 503).fold(
            Default::default(),
            |mut m, (s, _)| {
                *m.entry(*s).or_default() += 1;
                m
            },
        ),
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
    }
}

/// CPU seconds of the origin, the edge (wrangler + workerd) and this process, now.
fn cpu_now(stack: &Stack) -> [f64; 3] {
    let group = |s: &Option<e2e::Service>| {
        s.as_ref().and_then(e2e::Service::pgid).map_or(0.0, |g| {
            let (workerd, rest) = e2e::cpu::group_seconds(g);
            workerd + rest
        })
    };
    [group(&stack.origin), group(&stack.edge), e2e::cpu::own_seconds()]
}

fn peak_rss_mib(stack: &Stack) -> u64 {
    let pid = stack.origin.as_ref().and_then(e2e::Service::pgid).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    kib / 1024
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let bare = bare_argon2(cores);
    println!("bare argon2id verify (m=19456 KiB, t=2, p=1), {cores} threads: {bare:.1} /s");

    e2e::EDGE_AS_RUN_COMMAND.store(true, std::sync::atomic::Ordering::Relaxed);
    let stack = Stack::start_with(&[("IP_LOGIN_PER_MINUTE", "1000000"), ("IP_SIGNUP_PER_HOUR", "1000000")])
        .expect("starting the stack");
    let api = Api::new(stack.edge_url());
    let email = unique_email("bench-login");
    let created = api.signup(&email, GOOD_PASSWORD, serde_json::Value::Null).expect("signup");
    assert_eq!(created.status, 201, "{}", created.body);
    let first =
        api.post("/api/v1/auth/login", None, &json!({"email": email, "password": GOOD_PASSWORD})).unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    let device = first.str("device_token");
    // Warm the isolate, the gate and the origin's pool.
    logins(Target::Edge(&api), &email, &device, 2, 2);

    println!("full logins through the edge, one account, {SECONDS} s per line:");
    println!(
        "{:>6} {:>10} {:>8} {:>8} {:>9} {:>9} {:>12}",
        "conns", "logins/s", "ratio", "503s", "p50 ms", "p99 ms", "origin peak"
    );
    let mut shares = Vec::new();
    for connections in [2, 8, 64] {
        let before = cpu_now(&stack);
        let r = logins(Target::Edge(&api), &email, &device, connections, SECONDS);
        let after = cpu_now(&stack);
        let ok = r.ok_per_sec * SECONDS as f64;
        shares.push((connections, [0, 1, 2].map(|i| (after[i] - before[i]) * 1000.0 / ok.max(1.0))));
        println!(
            "{connections:>6} {:>10.1} {:>7.2}x {:>8} {:>9.1} {:>9.1} {:>9} MiB{}",
            r.ok_per_sec,
            r.ok_per_sec / bare,
            r.busy,
            r.p50_ms,
            r.p99_ms,
            peak_rss_mib(&stack),
            if r.other.is_empty() {
                String::new()
            } else {
                format!("  (other answers by status: {:?})", r.other)
            }
        );
    }
    // The origin alone: the same logins as the edge would ask for them, signed, straight to
    // the origin. The edge's CPU share above is what separates the two ratios on one machine.
    let secret = stack.secrets.shared_secret().expect("the shared secret");
    let base = format!("http://127.0.0.1:{}", stack.origin_port);
    println!("the origin alone (the edge's signed call, no edge), {SECONDS} s per line:");
    println!(
        "{:>6} {:>10} {:>8} {:>8} {:>9} {:>9} {:>12}",
        "conns", "logins/s", "ratio", "503s", "p50 ms", "p99 ms", "origin cpu"
    );
    for connections in [2, 8] {
        let before = cpu_now(&stack);
        let r =
            logins(Target::Origin { base: &base, secret: &secret }, &email, &device, connections, SECONDS);
        let after = cpu_now(&stack);
        let ok = (r.ok_per_sec * SECONDS as f64).max(1.0);
        println!(
            "{connections:>6} {:>10.1} {:>7.2}x {:>8} {:>9.1} {:>9.1} {:>8.1} ms{}",
            r.ok_per_sec,
            r.ok_per_sec / bare,
            r.busy,
            r.p50_ms,
            r.p99_ms,
            (after[0] - before[0]) * 1000.0 / ok,
            if r.other.is_empty() {
                String::new()
            } else {
                format!("  (other answers by status: {:?})", r.other)
            }
        );
    }
    println!(
        "CPU per successful login (ms; the hash alone is {:.1} ms of one core):",
        1000.0 * cores as f64 / bare
    );
    println!("{:>6} {:>10} {:>10} {:>10}", "conns", "origin", "edge", "client");
    for (connections, [origin, edge, me]) in shares {
        println!("{connections:>6} {origin:>10.1} {edge:>10.1} {me:>10.1}");
    }
}
