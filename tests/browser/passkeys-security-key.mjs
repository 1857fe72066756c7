// A roaming security key (virtual CTAP2 authenticator on USB, not discoverable) registered
// from the account page and used as the second factor after the password.
import { createHmac } from 'node:crypto';
import { run, screenshot, expect, virtualAuthenticator } from './lib.mjs';

/** The current RFC 6238 code of a base32 secret, as an authenticator app computes it. */
function totp(secret, at = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30000)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, '0');
}

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

  // Two sessions (the test signed in over the API first): end the other one.
  await page.waitForSelector('#sessions li:nth-child(2)');
  await page.click('#sessions li button');
  await page.waitForFunction(() => document.getElementById('sessions').children.length === 1);

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

  // An authenticator app: the QR code (rendered by the service as SVG) and a first code.
  await page.fill('#totp-password', password);
  await page.click('#totp-start-form button[type=submit]');
  await page.waitForSelector('#totp-confirm-form', { state: 'visible' });
  const qrWidth = await page.$eval('#totp-qr', (img) => img.complete && img.naturalWidth);
  expect(qrWidth > 0, 'the QR code shows');
  await screenshot(page, 'totp-qr');
  const secret = (await page.textContent('#totp-secret')).trim();
  await page.fill('#totp-code', totp(secret));
  await page.click('#totp-confirm-form button[type=submit]');
  await page.waitForSelector('#recovery-codes li:nth-child(10)', { timeout: 15000 }).catch(async () => {
    throw new Error(`TOTP confirmation: ${await page.textContent('#status')}`);
  });

  await page.click('#signout');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#password-form button[type=submit]');
  await page.waitForSelector('#mfa-passkey', { state: 'visible' });
  const picker = await page.textContent('#mfa-method');
  expect(picker.includes('Application d’authentification') && picker.includes('Code de secours'), `the factors are named in French: ${picker}`);
  await screenshot(page, 'security-key-second-factor');
  await page.click('#mfa-passkey');
  await page.waitForSelector('#account', { state: 'visible', timeout: 15000 }).catch(async () => {
    throw new Error(`second factor: ${await page.textContent('#status')}`);
  });
  await screenshot(page, 'security-key-signed-in');

  // The key now claims it can be backed up (another device may hold its private key): its
  // backup-eligible flag changed since registration, so it is refused and the refusal recorded.
  const [key] = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;
  await cdp.send('WebAuthn.setCredentialProperties', {
    authenticatorId, credentialId: key.credentialId, backupEligibility: true, backupState: false,
  });
  await page.click('#signout');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#password-form button[type=submit]');
  await page.waitForSelector('#mfa-passkey', { state: 'visible' });
  await page.click('#mfa-passkey');
  // The page speaks French: the refusal is said in French, with its reason.
  await page.waitForFunction(() => document.getElementById('status').textContent.includes('indicateur de sauvegarde'), null, { timeout: 15000 })
    .catch(async () => { throw new Error(`backup flag: ${await page.textContent('#status')}`); });
  expect(await page.isHidden('#account'), 'the changed key did not sign in');
  await screenshot(page, 'backup-flag-changed-refused');
});
