// The gateway's client SDK: `GatewayClient` (see index.d.ts for the surface).
export { GatewayClient } from "./client.js";
export { Backoff } from "./backoff.js";
export { refreshIn } from "./token.js";
