// White label: a member of an organization with a branding signs in on the account page and
// sees the organization's logo and colours; the colours are custom properties, the logo an
// inline image. A screenshot shows the branded page.
import { run, screenshot, expect } from './lib.mjs';

const base = process.env.EDGE_LOCAL_URL;
const email = process.env.USER_EMAIL;
const password = process.env.USER_PASSWORD;
const accent = process.env.BRAND_ACCENT;

await run(async (browser) => {
  const context = await browser.newContext({ locale: 'en-GB', viewport: { width: 900, height: 700 } });
  const page = await context.newPage();
  await page.goto(`${base}/account`);
  expect(await page.isHidden('#brand-logo'), 'no logo before signing in');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#password-form button[type=submit]');
  await page.waitForSelector('#account', { state: 'visible' });
  await page.waitForSelector('#brand-logo', { state: 'visible' });
  await page.waitForFunction((e) => document.getElementById('profile-email').textContent === e, email);
  await page.waitForSelector('#sessions li');
  const shown = await page.evaluate(() => ({
    accent: getComputedStyle(document.documentElement).getPropertyValue('--accent').trim(),
    logo: document.getElementById('brand-logo').getAttribute('src') || '',
    width: document.getElementById('brand-logo').naturalWidth,
  }));
  expect(shown.accent.toLowerCase() === accent.toLowerCase(), `the accent colour is the organization's: ${shown.accent}`);
  expect(shown.logo.startsWith('data:image/png;base64,') && shown.width > 0, `the logo is shown: ${JSON.stringify(shown)}`);
  await screenshot(page, 'branded-account');
  // Signing out drops the branding.
  await page.click('#signout');
  await page.waitForSelector('#signin', { state: 'visible' });
  expect(await page.isHidden('#brand-logo'), 'the logo goes with the session');
});
