// End to end in a real browser: Playwright (playwright-core) drives Debian's Chromium headless.
// Two browser contexts are two devices of one user on the demo page (`--dev`); one reaches the
// gateway through a proxy that is cut mid-turn, and comes back. Both end with the identical
// final text and the same unread count; a screenshot is kept (test artifact, and the README's).
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { proxy, startGateway } from "./harness.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const stops = [];
after(() => { for (const s of stops) s(); });

const finalText = (page) => page.waitForFunction(() => document.querySelector("#turn-status")?.dataset.status === "completed", null, { timeout: 30_000 })
  .then(() => page.textContent("#answer"));

test("two devices on the demo page: one cut mid-turn comes back; both show the same text and unread count", async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium is needed at ${CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)`);
  const gw = await startGateway({}, ["--dev"]);
  stops.push(gw.stop);
  const p = await proxy([gw.url]);
  stops.push(p.close);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  stops.push(() => browser.close());
  const open = async (base) => {
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
    const page = await ctx.newPage();
    await page.goto(`${base}/demo?user=e2e`);
    await page.waitForSelector('#state[data-state="connected"]');
    return page;
  };
  const a = await open(gw.url);
  const b = await open(p.url);
  await a.click("#ask");
  await b.waitForFunction(() => document.querySelector("#answer").textContent.length > 20);
  const cuts = p.cut();
  assert.ok(cuts > 0, "device b's connection was cut mid-turn");
  await b.waitForSelector('#state[data-state="connected"]', { timeout: 15_000 });
  const [ta, tb] = await Promise.all([finalText(a), finalText(b)]);
  assert.ok(ta.length > 100);
  assert.equal(tb, ta, "identical final text");
  await a.click("#notify");
  await a.click("#notify");
  const unread = (page) => page.waitForFunction(() => /\(2 unread\)/.test(document.querySelector("#unread").textContent), null, { timeout: 10_000 });
  await Promise.all([unread(a), unread(b)]);
  await a.click("#task");
  await b.waitForFunction(() => /completed/.test(document.querySelector("#tasks").textContent), null, { timeout: 15_000 });
  const dir = path.join(here, "../../../target/browser");
  mkdirSync(dir, { recursive: true });
  const shot = path.join(dir, "demo.png");
  await b.screenshot({ path: shot, fullPage: true });
  if (process.env.UPDATE_README_SCREENSHOT) copyFileSync(shot, path.join(here, "../../../docs/demo.png"));
  console.log(`browser: screenshot at ${shot}`);
});
