//! The edge benchmark (a command, not a test): starts a local stack on free ports and prints,
//! at 1 and 16 concurrent connections, requests per second and p50/p99 latency of the
//! authenticated profile read (token check + one gate Durable Object call + KV read) and of
//! token introspection (the token check alone, no I/O), and the size of the edge's wasm.
//! Run it with `scripts/bench`.

// A command-line tool: a failed step ends it with a message, which is what a panic gives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::time::{Duration, Instant};

use e2e::api::{unique_email, Api, GOOD_PASSWORD};
use e2e::http::client;
use e2e::{repo_root, Stack};
use serde_json::json;

const REQUESTS: usize = 3_000;
const WARMUP: usize = 200;

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU per request of workerd, and of the rest of `wrangler dev` (its Node.js), in ms.
    workerd_ms: f64,
    wrangler_ms: f64,
}

fn measure(url: &str, token: &str, connections: usize, edge_group: i32) -> Figures {
    let per_connection = REQUESTS / connections;
    let cpu_before = e2e::cpu::group_seconds(edge_group);
    let started = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|_| {
                scope.spawn(|| {
                    // One client per connection: keep-alive, as a real client would.
                    let http = client();
                    let mut own = Vec::with_capacity(per_connection);
                    for _ in 0..per_connection {
                        let t = Instant::now();
                        let response = http.get(url).bearer_auth(token).send().expect("request");
                        assert_eq!(response.status().as_u16(), 200, "{url}");
                        let _ = response.bytes();
                        own.push(t.elapsed());
                    }
                    own
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker")).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = e2e::cpu::group_seconds(edge_group);
    let count = latencies.len() as f64;
    let per_request = |before: f64, after: f64| (after - before) * 1e3 / count;
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e3
    };
    Figures {
        rps: latencies.len() as f64 / elapsed,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        workerd_ms: per_request(cpu_before.0, cpu_after.0),
        wrangler_ms: per_request(cpu_before.1, cpu_after.1),
    }
}

fn main() {
    e2e::EDGE_AS_RUN_COMMAND.store(true, std::sync::atomic::Ordering::Relaxed);
    let stack = Stack::start().expect("starting the stack");
    let api = Api::new(stack.edge_url());
    let admin_email = unique_email("bench-admin");
    stack.create_admin(&admin_email, GOOD_PASSWORD).expect("admin");
    let admin = stack.login_with_email_code(&api, &admin_email, GOOD_PASSWORD).expect("admin login");
    // An enterprise account: counted by its gate (unlike VIP), with room for every request.
    let email = unique_email("bench");
    let created = api
        .post(
            "/api/v1/users",
            Some(&admin),
            &json!({"email": email, "password": GOOD_PASSWORD, "tier": "enterprise"}),
        )
        .expect("user");
    let id = created.str("id");
    let token = stack.login_with_email_code(&api, &email, GOOD_PASSWORD).expect("login");

    let read = api.url(&format!("/api/v1/users/{id}"));
    let introspect = api.url("/api/v1/auth/token");
    // Warm the isolate, the gate and the cache before measuring.
    for url in [&read, &introspect] {
        for _ in 0..WARMUP {
            client().get(url.as_str()).bearer_auth(&token).send().expect("warm-up");
        }
    }

    let wasm = repo_root().join("build/index_bg.wasm");
    let raw = std::fs::read(&wasm).map(|b| b.len()).unwrap_or(0);
    println!("edge benchmark: wrangler dev (workerd) on 127.0.0.1, {REQUESTS} requests per line");
    // CPU per request changes little when other programs share the machine, unlike req/s: it
    // is the figure that compares two builds measured on a busy machine.
    println!(
        "{:<48} {:>6} {:>10} {:>9} {:>9} {:>12} {:>13}",
        "request", "conns", "req/s", "p50 ms", "p99 ms", "workerd cpu", "wrangler cpu"
    );
    let edge_group = stack.edge.as_ref().and_then(e2e::Service::pgid).expect("the edge's process group");
    for (name, url) in
        [("profile read (token + gate DO + KV)", &read), ("token check only (no I/O)", &introspect)]
    {
        for connections in [1, 16] {
            let f = measure(url, &token, connections, edge_group);
            println!(
                "{name:<48} {connections:>6} {:>10.0} {:>9.2} {:>9.2} {:>9.2} ms {:>10.2} ms",
                f.rps, f.p50_ms, f.p99_ms, f.workerd_ms, f.wrangler_ms
            );
        }
    }
    println!("edge wasm: {raw} bytes raw ({} KiB)", raw / 1024);
}
