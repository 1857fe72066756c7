// The browser harness itself: Chromium starts, loads a document the edge serves (its public
// keys) and a screenshot is written.
import { run, screenshot, expect } from './lib.mjs';

await run(async (browser) => {
  const page = await browser.newPage();
  const response = await page.goto(`${process.env.EDGE_URL}/.well-known/jwks.json`);
  expect(response && response.status() === 200, `GET /.well-known/jwks.json answered ${response && response.status()}`);
  const text = await page.textContent('body');
  expect(text.includes('"OKP"') && text.includes('"Ed25519"'), `the page shows the edge's Ed25519 keys: ${text}`);
  await screenshot(page, 'jwks');
});
