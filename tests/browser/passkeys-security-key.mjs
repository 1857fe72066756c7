// A roaming security key (virtual CTAP2 authenticator on USB, not discoverable) registered
// from the account page and used as the second factor after the password.
import { run, screenshot, expect, virtualAuthenticator } from './lib.mjs';

const base = process.env.EDGE_LOCAL_URL;
const email = process.env.USER_EMAIL;
const password = process.env.USER_PASSWORD;

await run(async (browser) => {
  const context = await browser.newContext({ locale: 'fr-FR', viewport: { width: 900, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/account`);
  const { cdp, authenticatorId } = await virtualAuthenticator(page, { transport: 'usb', hasResidentKey: false });
  expect((await page.textContent('#signin-title')) === 'Connexion', 'a French browser gets French');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#password-form button[type=submit]');
  await page.waitForSelector('#account', { state: 'visible' });

  await page.fill('#passkey-label', 'YubiKey');
  await page.fill('#passkey-password', password);
  await page.click('#add-security-key');
  await page.waitForSelector('#passkeys li:has-text("YubiKey")', { timeout: 15000 }).catch(async () => {
    throw new Error(`registration: ${await page.textContent('#status')}`);
  });
  const text = await page.textContent('#passkeys');
  expect(text.includes('Clé de sécurité'), `listed as a security key: ${text}`);
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  expect(credentials.length === 1 && !credentials[0].isResidentCredential, 'a non-discoverable credential');
  await screenshot(page, 'security-key-list');

  await page.click('#signout');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#password-form button[type=submit]');
  await page.waitForSelector('#mfa-passkey', { state: 'visible' });
  await screenshot(page, 'security-key-second-factor');
  await page.click('#mfa-passkey');
  await page.waitForSelector('#account', { state: 'visible', timeout: 15000 }).catch(async () => {
    throw new Error(`second factor: ${await page.textContent('#status')}`);
  });
  await screenshot(page, 'security-key-signed-in');
});
