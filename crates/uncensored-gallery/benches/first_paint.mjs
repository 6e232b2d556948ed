// Time to first paint of a gallery, in headless Chromium (Playwright), run by
// `cargo xtask bench gallery`. For each URL in GALLERIES (JSON: [{images, url}]),
// RUNS fresh page loads (no browser cache; the server's thumbnails are made):
// first-contentful-paint from the Performance API, and the time until every
// thumbnail of the first screen has loaded. Prints one JSON line per gallery.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.UNCENSORED_PLAYWRIGHT);
const galleries = JSON.parse(process.env.GALLERIES);
const runs = Number(process.env.RUNS || "7");
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

const browser = await chromium.launch({
  executablePath: process.env.UNCENSORED_CHROMIUM,
  headless: true,
  args: process.env.UNCENSORED_CHROMIUM_ARGS.split(" "),
});
try {
  for (const { images, url } of galleries) {
    const paints = [];
    const screens = [];
    let onScreen = 0;
    for (let run = 0; run <= runs; run++) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await context.newPage();
      await page.goto(url);
      // Every thumbnail inside the viewport decoded: the first screen is there.
      const handle = await page.waitForFunction(() => {
        const visible = [...document.querySelectorAll("#grid .card img")].filter(
          (img) => img.getBoundingClientRect().top < window.innerHeight,
        );
        const done = visible.length > 0 && visible.every((img) => img.complete && img.naturalWidth > 0);
        return done ? { at: performance.now(), count: visible.length } : false;
      }, null, { polling: "raf", timeout: 60_000 });
      const screen = await handle.jsonValue();
      const paint = await page.evaluate(
        () => performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? NaN,
      );
      await context.close();
      if (run === 0) continue; // the warm-up load
      paints.push(paint);
      screens.push(screen.at);
      onScreen = screen.count;
    }
    console.log(JSON.stringify({
      images,
      first_contentful_paint_ms: median(paints),
      first_screen_ms: median(screens),
      thumbnails_on_screen: onScreen,
      runs,
    }));
  }
} finally {
  await browser.close();
}
