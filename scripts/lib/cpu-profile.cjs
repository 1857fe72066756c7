// Samples a workerd isolate's CPU through its inspector while something else loads it, then
// prints where the time went: by kind (wasm, the wasm-bindgen JS glue, runtime calls such as
// fetch or crypto, garbage collection, idle) and the busiest functions.
// Usage: node cpu-profile.cjs INSPECTOR_PORT MILLIS [OUT.cpuprofile]
// The inspector is workerd's own (`--inspector-addr`), not wrangler's proxy of it; the first
// `core:user:` target is the Worker (and its Durable Objects, which run in the same isolate).
const [port, millis, out] = process.argv.slice(2);
let done = false;

async function main() {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const target = targets.find((t) => t.id.startsWith("core:user:"));
  if (!target) throw new Error(`no Worker behind the inspector on port ${port}`);
  const ws = new WebSocket(`ws://127.0.0.1:${port}/${target.id}`);
  let next = 0;
  const waiting = new Map();
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      const id = ++next;
      waiting.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  ws.onmessage = (m) => {
    const d = JSON.parse(String(m.data));
    // workerd echoes a command it accepted without a result; only a result settles it.
    if (d.id && d.result && waiting.has(d.id)) waiting.get(d.id)(d.result);
  };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  // wrangler's own inspector proxy may take the session over (seen right after a start): say so
  // instead of exiting with nothing to await.
  ws.onclose = () => {
    if (!done) {
      console.error("the inspector closed this session before the profile was read: run again");
      process.exit(1);
    }
  };
  ws.send(JSON.stringify({ id: 900001, method: "Profiler.enable", params: {} }));
  ws.send(JSON.stringify({ id: 900002, method: "Profiler.start", params: {} }));
  await new Promise((r) => setTimeout(r, Number(millis)));
  const { profile } = await send("Profiler.stop");
  if (out) require("fs").writeFileSync(out, JSON.stringify(profile));
  // The bundled glue's functions are anonymous: name each by the wasm-bindgen import defined on
  // its line (`__wbg_verify_…` is crypto.subtle.verify, `__wbg_fetch_…` a fetch, and so on).
  ws.send(JSON.stringify({ id: 900003, method: "Debugger.enable", params: {} }));
  const sources = new Map();
  for (const n of profile.nodes) {
    const f = n.callFrame;
    if (f.url && !sources.has(f.scriptId) && !/^[0-9a-f]{8}$/.test(f.url.split("/").pop())) {
      const got = await Promise.race([
        send("Debugger.getScriptSource", { scriptId: f.scriptId }),
        new Promise((r) => setTimeout(() => r({}), 2000)),
      ]);
      sources.set(f.scriptId, (got.scriptSource || "").split("\n"));
    }
  }
  done = true;
  ws.close();
  report(profile, target.id, sources);
}

function report(profile, name, sources) {
  const glueName = (f) => {
    const line = (sources.get(f.scriptId) || [])[f.lineNumber] || "";
    const names = line.match(/__wbg_[A-Za-z]+|__wbindgen_[a-z_]+/g);
    return names ? names[names.length - 1] : f.functionName || "(anonymous)";
  };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const hits = new Map();
  for (const s of profile.samples) hits.set(s, (hits.get(s) || 0) + 1);
  const kinds = new Map();
  const functions = new Map();
  let total = 0;
  for (const [id, n] of hits) {
    const f = byId.get(id).callFrame;
    const file = f.url.split("/").pop();
    let kind;
    if (f.functionName.startsWith("wasm-function") || /^[0-9a-f]{8}$/.test(file)) kind = "wasm (our Rust)";
    else if (f.url === "") kind = f.functionName.startsWith("(") ? f.functionName : "runtime: " + f.functionName;
    else kind = "JavaScript: " + file;
    kinds.set(kind, (kinds.get(kind) || 0) + n);
    const key = f.url && kind.startsWith("JavaScript") ? `${glueName(f)} (${file}:${f.lineNumber + 1})` : `${f.functionName || "(anonymous)"}`;
    functions.set(key, (functions.get(key) || 0) + n);
    total += n;
  }
  const pct = (n) => ((100 * n) / total).toFixed(1).padStart(5) + "%";
  console.log(`${name}: ${total} samples`);
  for (const [k, n] of [...kinds].sort((a, b) => b[1] - a[1])) if (n / total >= 0.005) console.log(`  ${pct(n)}  ${k}`);
  console.log("  busiest functions:");
  for (const [k, n] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${pct(n)}  ${k.slice(0, 100)}`);
}

main().catch((e) => { console.error(e.message || e); process.exit(1); });
