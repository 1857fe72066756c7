// Shared by the browser tests: starts the system's headless Chromium with playwright-core,
// saves numbered screenshots into $SCREENSHOT_DIR, and fails loudly.
//
// Flags: root needs --no-sandbox; the background-networking flags keep Chromium from calling
// Google's hosts, which this machine's closed network refuses.
import { chromium } from 'playwright-core';
import path from 'node:path';

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

let shot = 0;
/** Saves a full-page screenshot named `NN-<name>.png` and returns its path. */
export async function screenshot(page, name) {
  shot += 1;
  const file = path.join(process.env.SCREENSHOT_DIR || '.', `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot ${file}`);
  return file;
}

/** Throws with `message` unless `condition` holds. */
export function expect(condition, message) {
  if (!condition) throw new Error(`expectation failed: ${message}`);
}

/** Runs `body(browser)` and exits 0, or prints the error and exits 1; the browser always closes. */
export async function run(body) {
  const browser = await launch();
  let code = 0;
  try {
    await body(browser);
    console.log('ok');
  } catch (e) {
    console.error(e && e.stack ? e.stack : e);
    code = 1;
  } finally {
    await browser.close().catch(() => {});
  }
  process.exit(code);
}

/** A Chromium virtual WebAuthn authenticator on `page` (CDP), e.g. { transport: 'internal' }. */
export async function virtualAuthenticator(page, options = {}) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      ...options,
    },
  });
  return { cdp, authenticatorId };
}
