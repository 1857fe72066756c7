// The Worker's entry module (wrangler's `main`): worker-build's output as it is, with the gate's
// class made a DurableObject subclass. The runtime offers RPC only on such classes, and the
// edge calls its gates by RPC (`Gate.gateOp`, see src/gate/mod.rs); worker-build 0.8 exports
// the class without that base. Setting the prototypes reaches the class behind worker-build's
// proxy, which forwards them to it.
import { DurableObject } from "cloudflare:workers";
import { Gate } from "../build/worker/shim.mjs";

Object.setPrototypeOf(Gate.prototype, DurableObject.prototype);
Object.setPrototypeOf(Gate, DurableObject);

export * from "../build/worker/shim.mjs";
export { default } from "../build/worker/shim.mjs";
