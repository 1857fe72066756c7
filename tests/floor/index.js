// The floor of the edge's hot path: what the profile read and the token check cost on workerd
// when nothing but the runtime's own calls is made. No framework and no library: one header
// read, WebCrypto's Ed25519 verify, JSON.parse of the claims, one RPC to a per-user Durable
// Object counting a rolling hour in SQLite (the peer's statements), one KV read, one Response.
// `scripts/bench-peer` runs it beside our edge and the TypeScript peer: its figures bound what
// any implementation of this design can reach here, in any language.
import { DurableObject } from "cloudflare:workers";

let key;
const text = new TextDecoder();
const bytes = new TextEncoder();
const base64url = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

/** The token's header and claims when its signature and registered claims hold, else null. */
async function verify(env, authorization) {
  if (!authorization || !authorization.startsWith("Bearer ")) return null;
  const token = authorization.slice(7);
  const a = token.indexOf(".");
  const b = token.indexOf(".", a + 1);
  if (a < 0 || b < 0) return null;
  const header = JSON.parse(text.decode(base64url(token.slice(0, a))));
  if (header.alg !== "EdDSA") return null;
  key ??= await crypto.subtle.importKey("jwk", JSON.parse(env.JWT_PUBLIC_JWK), { name: "Ed25519" }, false, ["verify"]);
  const signed = bytes.encode(token.slice(0, b));
  if (!(await crypto.subtle.verify("Ed25519", key, base64url(token.slice(b + 1)), signed))) return null;
  const claims = JSON.parse(text.decode(base64url(token.slice(a + 1, b))));
  const now = Date.now() / 1000;
  if (claims.iss !== env.ISSUER || claims.aud !== env.AUDIENCE || !(claims.exp > now - 30)) return null;
  if (typeof claims.nbf === "number" && claims.nbf > now + 30) return null;
  return { header, claims };
}

export class FloorGate extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.quotas = JSON.parse(env.QUOTAS);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS b (minute INTEGER PRIMARY KEY, n INTEGER NOT NULL)");
  }
  // The peer's rolling hour over 60 one-minute buckets, statement for statement.
  admit(tier, now) {
    const quota = this.quotas[tier];
    if (quota === undefined) return { ok: true, remaining: -1, retry: 0 };
    const minute = Math.floor(now / 60000);
    const sql = this.ctx.storage.sql;
    sql.exec("DELETE FROM b WHERE minute <= ?", minute - 60);
    const used = sql.exec("SELECT COALESCE(SUM(n),0) AS s FROM b").one().s;
    if (used >= quota) {
      const oldest = sql.exec("SELECT MIN(minute) AS m FROM b").one().m;
      return { ok: false, remaining: 0, retry: Math.max(1, Math.ceil(((oldest + 60) * 60000 - now) / 1000)) };
    }
    sql.exec("INSERT INTO b (minute, n) VALUES (?, 1) ON CONFLICT(minute) DO UPDATE SET n = n + 1", minute);
    return { ok: true, remaining: quota - used - 1, retry: 0 };
  }
}

const problem = (status, title) => Response.json({ title }, { status });

export default {
  async fetch(req, env) {
    const url = req.url;
    const path = url.slice(url.indexOf("/", url.indexOf("//") + 2));
    if (req.method === "PUT" && path.startsWith("/seed/")) {
      await env.PROFILES.put(`profile:${path.slice(6)}`, await req.text());
      return new Response(null, { status: 204 });
    }
    const verified = await verify(env, req.headers.get("authorization"));
    if (path === "/token-only") return verified ? Response.json({ sub: verified.claims.sub }) : problem(401, "unauthorized");
    if (!path.startsWith("/api/v1/users/")) return problem(404, "not found");
    if (!verified || verified.header.typ !== "at+jwt") return problem(401, "unauthorized");
    const claims = verified.claims;
    const id = path.slice(14);
    if (claims.sub !== id) return problem(403, "forbidden");
    const d = await env.GATE.get(env.GATE.idFromName(id)).admit(String(claims.tier), Date.now());
    if (!d.ok) return Response.json({ title: "too many requests" }, { status: 429, headers: { "retry-after": String(d.retry) } });
    const profile = await env.PROFILES.get(`profile:${id}`);
    if (profile === null) return problem(404, "not found");
    return new Response(profile, { headers: { "content-type": "application/json", ratelimit: `remaining=${d.remaining}` } });
  },
};
