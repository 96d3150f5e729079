// The web view in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by
// puppeteer-core opens the page of a live `bulkhead train --web`, sees the loss curve grow and a
// new sample appear without a reload, presses "restart" on a plugin and sees the restart counted
// in the table, stops the run with its button, and finds the restart in plugin-report.json.
//
//   BULKHEAD_EXE=build/bin/bulkhead node tests/web/browser_test.mjs
//   BULKHEAD_SCREENSHOT=docs/web-view.png ...   also saves a screenshot of the page
//
// Exit 0: passed; 1: failed; 77 (ctest's SKIP_RETURN_CODE): no Chromium or no puppeteer-core, said why.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const SKIP = 77;
const chromium = process.env.BULKHEAD_CHROMIUM || "/usr/bin/chromium";
const exe = process.env.BULKHEAD_EXE;
const timeoutMs = 240_000;

function skip(reason) {
  console.log(`SKIPPED: ${reason}`);
  process.exit(SKIP);
}

if (!fs.existsSync(chromium)) skip(`no Chromium at ${chromium} (apt-get install chromium, or set BULKHEAD_CHROMIUM)`);
let puppeteer;
try {
  puppeteer = createRequire(import.meta.url)("puppeteer-core");
} catch {
  skip("puppeteer-core is not installed in tests/web (bash scripts/install-node-deps.sh)");
}
if (!exe || !fs.existsSync(exe)) {
  console.error(`BULKHEAD_EXE must name the bulkhead program (it is "${exe}")`);
  process.exit(1);
}

// A small real training (16x16, a tiny UNet) that samples every 8 steps, with a C++ and a
// JavaScript plugin, long enough to outlive the test: the test stops it with the page's button.
function writeConfig(dir) {
  const config = {
    run_dir: path.join(dir, "run"), max_epochs: 400, resolution: 16, batch_size: 32, lr: 0.003, lr_warmup_steps: 5,
    max_tokens: 16, num_threads: 1, num_workers: 2, sample_inference_steps: 2, sample_steps: 8,
    sample_every_n_epochs: 0, save_every_n_epochs: 0,
    sample_prompts: ["a red circle on a white background, center", "a blue square on a black background, top left"],
    model: { channels: 8, channel_mults: [1, 2], embed_dim: 32 },
    plugins: [{ name: "caption_case_js", options: { case: "lower" } }, { name: "caption_tag_shuffle", options: { keep_tags: 1 } }],
  };
  const file = path.join(dir, "train.json");
  fs.writeFileSync(file, JSON.stringify(config));
  return file;
}

// Starts the trainer and resolves with the URL it prints, and a promise of its exit status.
function startTrainer(config, logFile) {
  const child = spawn(exe, ["train", "--config", config, "--web", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  const log = fs.createWriteStream(logFile);
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? 128 + os.constants.signals[signal])));
  const url = new Promise((resolve, reject) => {
    let text = "";
    const read = (chunk) => {
      log.write(chunk);
      text += chunk;
      const found = text.match(/web view: (http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]+)/);
      if (found) resolve(found[1]);
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    exited.then((code) => reject(new Error(`the trainer exited (${code}) before printing its URL; see ${logFile}`)));
  });
  return { child, url, exited };
}

function check(condition, what) {
  if (!condition) throw new Error(what);
  console.log(`ok: ${what}`);
}

// The loss chart's point count and, per prompt, how many sample images the page lists.
const pageState = () => ({
  points: Number(document.getElementById("loss-chart").dataset.points || 0),
  images: [...document.querySelectorAll(".sample")].map((s) => Number(s.dataset.images)),
  loadedImages: [...document.querySelectorAll(".sample img")].filter((i) => i.complete && i.naturalWidth > 0).length,
  marker: window.__notReloaded === true,
});

async function run() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bulkhead-web-"));
  const trainer = startTrainer(writeConfig(dir), path.join(dir, "output.txt"));
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    // Root in a container: Chromium's own sandbox needs user namespaces it may not get.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
  try {
    const url = await trainer.url;
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 1500 });
    page.on("dialog", (dialog) => dialog.accept());  // "Stop the run?"
    page.on("pageerror", (error) => console.error(`page error: ${error.message}`));
    const response = await page.goto(url, { waitUntil: "load" });
    check(response.ok() && !page.url().includes("token="), "the page opened, and the token left the address bar for a cookie");
    await page.evaluate(() => { window.__notReloaded = true; });

    await page.waitForFunction(() => Number(document.getElementById("loss-chart").dataset.points) > 0, { timeout: 60_000 });
    const before = await page.evaluate(pageState);
    await page.waitForFunction((n) => Number(document.getElementById("loss-chart").dataset.points) >= n + 30,
      { timeout: 90_000 }, before.points);
    check(true, `the loss curve grew from ${before.points} points without a reload`);

    await page.waitForFunction(() => document.querySelectorAll(".sample").length > 0, { timeout: 60_000 });
    const first = await page.evaluate(pageState);
    await page.waitForFunction((n) => [...document.querySelectorAll(".sample")].some((s) => Number(s.dataset.images) > n),
      { timeout: 90_000 }, Math.max(...first.images));
    await page.waitForFunction(() => [...document.querySelectorAll(".sample img")].every((i) => i.complete && i.naturalWidth > 0),
      { timeout: 30_000 });
    const later = await page.evaluate(pageState);
    check(later.marker, `a new sample appeared (${first.images} -> ${later.images} images per prompt) without a reload`);

    const row = 'tr[data-plugin="caption_tag_shuffle"]';
    await page.waitForSelector(`${row} button[data-action="restart_plugin"]:not([disabled])`, { timeout: 30_000 });
    check(await page.$eval(`${row} td.reloads`, (td) => td.textContent) === "0", "the plugins table shows caption_tag_shuffle, never restarted");
    await page.click(`${row} button[data-action="restart_plugin"]`);
    await page.waitForFunction(() => /^restarted caption_tag_shuffle at step \d+/.test(document.getElementById("message").textContent),
      { timeout: 30_000 });
    await page.waitForFunction((r) => document.querySelector(`${r} td.reloads`)?.textContent === "1", { timeout: 30_000 }, row);
    check(true, "restart pressed: the trainer answered, and the table counts the restart");

    // A phone's width: the page reflows, and only the tables scroll sideways, inside their boxes.
    await page.setViewport({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `at a phone's width (390 px) nothing sticks out of the page (${overflow} px)`);
    await page.setViewport({ width: 1100, height: 1500 });

    if (process.env.BULKHEAD_SCREENSHOT) {
      await page.screenshot({ path: process.env.BULKHEAD_SCREENSHOT, fullPage: true });
      console.log(`screenshot: ${process.env.BULKHEAD_SCREENSHOT}`);
    }

    await page.click("#stop-run");
    const status = await trainer.exited;
    check(status === 0, `"Stop the run" ended the training cleanly (exit status ${status})`);
    const report = JSON.parse(fs.readFileSync(path.join(dir, "run", "plugin-report.json"), "utf8"));
    const plugin = report.plugins.find((p) => p.name === "caption_tag_shuffle");
    check(plugin && plugin.reloads === 1, "plugin-report.json counts the restart");
    check((await page.evaluate(pageState)).marker, "the page was never reloaded");
    fs.rmSync(dir, { recursive: true, force: true });
  } finally {
    await browser.close();
    trainer.child.kill("SIGINT");
  }
}

const timer = setTimeout(() => { console.error(`FAILED: not done within ${timeoutMs / 1000} s`); process.exit(1); }, timeoutMs);
run().then(() => { clearTimeout(timer); console.log("PASSED"); process.exit(0); },
  (error) => { clearTimeout(timer); console.error(`FAILED: ${error.stack || error}`); process.exit(1); });
