// Compiled by `npm run build` (tsc --noEmit): the shipped types are what an app writes against.
import { GatewayClient, type Turn } from "../index.js";

const client = new GatewayClient({ url: "https://gw.example", getToken: async () => "jwt", transport: "auto" });
client.on("state", (s) => { const x: "connecting" | "connected" | "disconnected" | "closed" = s; void x; });
client.on("turn", (t: Turn) => { const text: string = t.text; void text; });
client.on("reset", ({ epoch, seq }) => { void epoch.length; void (seq + 1); });
void client.connect().then(() => client.markNotifications("all", "read"));
// @ts-expect-error: not an event of the SDK
client.on("nope", () => {});
