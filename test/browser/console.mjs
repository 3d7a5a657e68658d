// Drives the operator console of a running meshd in headless Chromium
// with playwright-core; run by console_test.go, which starts meshd and
// reads this script's output: one "ok <step>" line per step passed, or
// "FAIL <step>: <why>" and exit status 1.
//
// Environment: PLAYWRIGHT_CORE (the playwright-core directory), CHROMIUM
// (the browser), CONSOLE_URL (the admin listener), GATEWAY_URL,
// ADMIN_TOKEN (typed as a Basic password, as a person would at the
// browser's prompt), DLQ_SERVICE (a service with one dead letter),
// DRAIN_SERVICE (a service to drain; empty: skip), SHOT_DIR (screenshots).
import { createRequire } from "node:module";
import path from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (v === undefined) throw new Error("missing " + k);
  return v;
};
const require = createRequire(path.join(env("PLAYWRIGHT_CORE"), "package.json"));
const { chromium } = require(env("PLAYWRIGHT_CORE"));

const consoleURL = env("CONSOLE_URL");
const origin = new URL(consoleURL).origin;
const WAIT = 20000; // liveness bound of each wait, not a speed claim

let step = "launch";
const ok = (name) => console.log("ok " + name);

// text waits until fn(text of selector) holds, and returns that text.
async function waitText(page, selector, fn, what) {
  const deadline = Date.now() + WAIT;
  let last = "(absent)";
  for (;;) {
    const loc = page.locator(selector);
    if (await loc.count() > 0) {
      last = (await loc.first().innerText()).trim();
      if (fn(last)) return last;
    }
    if (Date.now() > deadline) throw new Error(what + ": " + selector + " is " + JSON.stringify(last));
    await page.waitForTimeout(200);
  }
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
});
try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    httpCredentials: { username: "operator", password: env("ADMIN_TOKEN") },
  });
  const page = await context.newPage();
  const foreign = [];
  const problems = [];
  page.on("request", (r) => { if (!r.url().startsWith(origin + "/")) foreign.push(r.url()); });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") problems.push("console error: " + m.text()); });
  page.on("response", (r) => { if (r.status() >= 400) problems.push(r.status() + " for " + r.url()); });

  step = "services";
  await page.goto(consoleURL, { waitUntil: "load" });
  for (const name of ["order", "payment", env("DLQ_SERVICE")]) {
    await waitText(page, `#services-body tr[data-service="${name}"] .status`, (t) => t.includes("UP"), name + " listed UP");
  }
  await waitText(page, "#live", (t) => t.includes("live"), "live");
  ok(step);

  step = "order count";
  const cell = '#routes-body tr[data-route="order POST /orders"] td.requests';
  const before = (await page.locator(cell).count()) > 0 ? Number(await page.locator(cell).innerText()) : 0;
  const resp = await fetch(env("GATEWAY_URL") + "/orders", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: "console", items: [{ name: "pen", price: 100 }] }),
  });
  if (resp.status !== 201) throw new Error("POST /orders: " + resp.status + " " + await resp.text());
  await waitText(page, cell, (t) => Number(t) === before + 1, "POST /orders counted (was " + before + ")");
  ok(step);

  step = "redrive";
  const dlq = env("DLQ_SERVICE");
  const box = `[data-dlq="${dlq}"]`;
  await waitText(page, box + " h3", (t) => t.includes("1 dead letter"), "the dead letter listed");
  const all = page.locator(`${box} button[data-redrive="${dlq}"]:not([data-id])`);
  // Cancelled at the confirmation: nothing is sent.
  let asked = "";
  page.once("dialog", (d) => { asked = d.message(); d.dismiss(); });
  await all.click();
  if (!asked.includes("Redrive") || !asked.includes(dlq)) throw new Error("no confirmation asked: " + JSON.stringify(asked));
  await page.waitForTimeout(500);
  if ((await page.locator("#redrive-result").innerText()).trim() !== "") throw new Error("redriven although cancelled");
  // Confirmed: redriven.
  page.once("dialog", (d) => d.accept());
  await all.click();
  await waitText(page, "#redrive-result", (t) => t.includes("redriven 1 event"), "redrive answered");
  ok(step);

  const drain = process.env.DRAIN_SERVICE || "";
  if (drain) {
    step = "drain";
    const r = await fetch(origin + "/v1/services/" + encodeURIComponent(drain) + "/drain", {
      method: "POST", headers: { Authorization: "Bearer " + env("ADMIN_TOKEN") },
    });
    if (r.status >= 300) throw new Error("POST drain: " + r.status + " " + await r.text());
    await waitText(page, `#services-body tr[data-service="${drain}"] .status`, (t) => t.includes("OUT_OF_SERVICE"), drain + " drained");
    ok(step);
  }

  step = "screenshot";
  await page.waitForTimeout(2500); // one more poll, so the charts have points
  await page.screenshot({ path: path.join(env("SHOT_DIR"), "console.png"), fullPage: true });
  ok(step);

  step = "phone";
  const phone = await context.newPage();
  await phone.setViewportSize({ width: 390, height: 844 });
  phone.on("request", (r) => { if (!r.url().startsWith(origin + "/")) foreign.push(r.url()); });
  await phone.goto(consoleURL, { waitUntil: "load" });
  await waitText(phone, '#services-body tr[data-service="order"] .status', (t) => t.includes("UP") || t.includes("OUT_OF_SERVICE"), "order on a phone");
  const widths = await phone.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  if (widths[0] > widths[1] + 1) throw new Error("wider than a phone: " + widths[0] + " px in " + widths[1]);
  await phone.screenshot({ path: path.join(env("SHOT_DIR"), "console-phone.png"), fullPage: true });
  ok(step);

  step = "one origin";
  if (foreign.length > 0) throw new Error("requests to another origin: " + foreign.slice(0, 5).join(", "));
  if (problems.length > 0) throw new Error(problems.slice(0, 5).join("; "));
  ok(step);
} catch (e) {
  console.log("FAIL " + step + ": " + String(e && e.message || e).split("\n")[0].slice(0, 2000));
  process.exitCode = 1;
} finally {
  await browser.close();
}
