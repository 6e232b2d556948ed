// The gallery in a real browser (headless Chromium driven by Playwright),
// run by tests/gallery_browser.rs, which made the batch, started
// `uncensored gallery` and passes everything through the environment.
// Every wait is for the DOM (or a process), never for time.
import { createRequire } from "node:module";
import { spawn } from "node:child_process";

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.UNCENSORED_PLAYWRIGHT);
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env("GALLERY_URL");
const shots = env("SCREENSHOT_DIR");
const stored = Number(env("EXPECTED_IMAGES"));
const failed = Number(env("EXPECTED_FAILURES"));
const searched = env("SEARCH_PROMPT");
const markup = env("MARKUP_PROMPT");
const livePrompt = env("LIVE_PROMPT");
const wait = { timeout: 30_000 };

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: env("UNCENSORED_CHROMIUM"),
  headless: true,
  args: env("UNCENSORED_CHROMIUM_ARGS").split(" "),
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("dialog", (dialog) => {
    problems.push(`a dialog opened: ${dialog.message()}`);
    dialog.dismiss();
  });
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`${response.status()} for ${response.url()}`);
  });
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  await page.goto(url);

  // The first screen of thumbnails loads (decoded images, not broken ones).
  await page.waitForFunction(() => {
    const images = [...document.querySelectorAll("#grid .card img")].slice(0, 12);
    return images.length === 12 && images.every((img) => img.complete && img.naturalWidth > 0);
  }, null, wait);
  await page.waitForFunction((n) => document.getElementById("summary").textContent.startsWith(`${n} images`), stored, wait);
  await page.screenshot({ path: `${shots}/grid.png` });

  // A prompt with markup is shown as its text, and nothing of it ran.
  await page.fill("#q", "markup-probe");
  await page.waitForFunction((text) => {
    const prompts = [...document.querySelectorAll("#grid .card .prompt")];
    return prompts.length === 1 && prompts[0].textContent === text;
  }, markup, wait);
  check(await page.evaluate(() => window.__pwned === undefined), "the prompt's markup ran");
  check((await page.locator("#grid .card .prompt img, #grid .card .prompt script").count()) === 0, "the prompt became elements");

  // Search finds one prompt; its detail shows every sidecar field and the SHA-256.
  await page.fill("#q", searched);
  await page.waitForFunction((text) => {
    const prompts = [...document.querySelectorAll("#grid .card .prompt")];
    return prompts.length === 1 && prompts[0].textContent.includes(text);
  }, searched, wait);
  await page.click("#grid .card");
  await page.waitForSelector("#detail[open]", wait);
  await page.waitForFunction(() => {
    const img = document.getElementById("detail-image");
    return img.complete && img.naturalWidth > 0;
  }, null, wait);
  const fields = await page.locator("#detail-fields").innerText();
  for (const label of ["Prompt", "Model", "Size", "Created", "Generation time", "Job", "SHA-256"]) {
    check(fields.includes(label), `the detail lacks ${label}: ${fields}`);
  }
  check(/[0-9a-f]{64}/.test(fields), `the detail shows no SHA-256: ${fields}`);
  check(fields.includes(searched), "the detail shows another prompt");
  await page.screenshot({ path: `${shots}/detail.png` });
  await page.click("#close");
  await page.fill("#q", "");
  await page.waitForFunction((n) => document.getElementById("summary").textContent.startsWith(`${n} images`), stored, wait);

  // The failed lines, each with its reason and advice.
  await page.waitForFunction((n) => document.querySelectorAll("#failures .failure").length === n, failed, wait);
  const failures = await page.locator("#failures .failure").allInnerTexts();
  for (const text of failures) {
    check(text.includes("moderation") && text.includes("change the prompt"), `a failure without reason or advice: ${text}`);
  }
  await page.screenshot({ path: `${shots}/failures.png` });

  // Another batch into the same store while the page is open (a journal of
  // its own: a journal holds one batch): its image appears.
  const batch = spawn(env("UNCENSORED_BIN"), ["--emulator", "batch", env("LIVE_BATCH"), "--out", env("STORE"), "--journal", env("LIVE_JOURNAL")], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  const exited = new Promise((resolve, reject) => {
    batch.on("error", reject);
    batch.on("exit", resolve);
  });
  await page.waitForFunction(
    (text) => [...document.querySelectorAll("#grid .card .prompt")].some((p) => p.textContent === text),
    livePrompt,
    wait,
  );
  await page.waitForFunction(() => {
    const first = document.querySelector("#grid .card img");
    return first && first.complete && first.naturalWidth > 0;
  }, null, wait);
  check((await exited) === 0, "the live batch failed");
  await page.screenshot({ path: `${shots}/live.png` });
  check(problems.length === 0, problems.join("\n"));
  console.log("gallery browser test: ok");
} finally {
  await browser.close();
}
