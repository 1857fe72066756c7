// The account page with a platform passkey (Chromium's virtual authenticator, internal
// transport, user verification): password sign-in, add and rename a passkey, passwordless
// sign-in, the passkey as second factor, a cloned credential (counter set back) refused and
// recorded, then the passkey removed after a step-up. A screenshot at each step.
import { run, screenshot, expect, virtualAuthenticator } from './lib.mjs';

const base = process.env.EDGE_LOCAL_URL;
const email = process.env.USER_EMAIL;
const password = process.env.USER_PASSWORD;
const api = process.env.EDGE_URL;

async function visible(page, selector, what) {
  await page.waitForSelector(selector, { state: 'visible', timeout: 15000 }).catch(async () => {
    const status = await page.textContent('#status');
    throw new Error(`${what}: ${selector} never showed; status: ${status}`);
  });
}

async function status(page, fragment, what) {
  await page.waitForFunction(
    (f) => document.getElementById('status').textContent.includes(f), fragment, { timeout: 15000 },
  ).catch(async () => {
    throw new Error(`${what}: status never said ${JSON.stringify(fragment)}; it says ${JSON.stringify(await page.textContent('#status'))}`);
  });
}

// The page offers passkey autofill (conditional UI) on its sign-in view. Chromium's virtual
// authenticator answers it as soon as the email field takes the focus (a person would pick the
// passkey among the field's suggestions), so the steps that sign in otherwise first hold the
// autofill back by failing its options request, as a browser without autofill would.
const OPTIONS = '**/api/v1/auth/passkey/options';
const noAutofill = (route) => route.abort();

async function signOut(page, { autofill = false } = {}) {
  if (!autofill) await page.route(OPTIONS, noAutofill);
  await page.click('#signout');
  if (!autofill) {
    await visible(page, '#signin', 'signed out');
    await page.waitForTimeout(300);
    await page.unroute(OPTIONS, noAutofill);
  }
}

await run(async (browser) => {
  const context = await browser.newContext({ locale: 'en-GB', viewport: { width: 900, height: 900 } });
  const page = await context.newPage();
  page.on('dialog', (d) => d.accept('Work laptop'));
  await page.route(OPTIONS, noAutofill);
  const response = await page.goto(`${base}/account`);
  expect(response.status() === 200, `GET /account answered ${response.status()}`);
  const csp = response.headers()['content-security-policy'] || '';
  expect(csp.includes("script-src 'self'") && !csp.includes('unsafe-inline'), `a strict CSP: ${csp}`);
  const { cdp, authenticatorId } = await virtualAuthenticator(page, { transport: 'internal' });
  await screenshot(page, 'signin');

  // French, then back.
  await page.click('#lang');
  expect((await page.textContent('#signin-title')) === 'Connexion', 'the page speaks French');
  await screenshot(page, 'signin-fr');
  await page.click('#lang');
  await page.unroute(OPTIONS, noAutofill);

  // Password sign-in (no factor yet): the account view.
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#password-form button[type=submit]');
  await visible(page, '#account', 'password sign-in');
  await page.waitForFunction((e) => document.getElementById('profile-email').textContent === e, email);
  expect((await page.textContent('#profile-tier')) === 'free', 'the tier shows');
  await screenshot(page, 'signed-in');

  // Add a passkey (recent authentication: the current password), then rename it.
  await page.fill('#passkey-label', 'Laptop');
  await page.fill('#passkey-password', password);
  await page.click('#add-passkey');
  await status(page, 'Passkey added', 'registration');
  await page.waitForSelector('#passkeys li:has-text("Laptop")');
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  expect(credentials.length === 1 && credentials[0].isResidentCredential, `one discoverable credential: ${JSON.stringify(credentials)}`);
  await page.click('#passkeys li button:has-text("Rename")');
  await page.waitForSelector('#passkeys li:has-text("Work laptop")');
  await screenshot(page, 'passkey-list');

  // Passwordless sign-in, from the button.
  await signOut(page);
  await page.click('#passkey-signin');
  await visible(page, '#account', 'passwordless sign-in');
  await screenshot(page, 'passwordless-signed-in');

  // Passkey autofill: signing out offers the passkey in the email field again, and the
  // virtual authenticator picks it.
  const autofillOptions = page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/passkey/options'));
  await signOut(page, { autofill: true });
  await visible(page, '#signin', 'signed out');
  expect((await autofillOptions).status() === 200, 'the sign-in view started a conditional ceremony');
  await page.focus('#email');
  await visible(page, '#account', 'passkey autofill (conditional UI)');

  // Password, then the passkey as second factor.
  await signOut(page);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#password-form button[type=submit]');
  await visible(page, '#mfa-passkey', 'the challenge offers the passkey');
  await screenshot(page, 'second-factor');
  await page.click('#mfa-passkey');
  await visible(page, '#account', 'passkey as second factor');

  // A clone: the same key with its counter set back is refused, and recorded.
  await signOut(page);
  const [original] = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;
  expect(original.signCount >= 3, `the counter moved with each use: ${original.signCount}`);
  await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: original.credentialId });
  await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...original, signCount: 1 } });
  await page.click('#passkey-signin');
  await status(page, 'refused', 'the cloned counter');
  expect(await page.isHidden('#account'), 'the clone did not sign in');
  await screenshot(page, 'cloned-counter-refused');
  // The genuine authenticator (counter ahead) still works.
  await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: original.credentialId });
  await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...original, signCount: original.signCount + 10 } });
  await page.click('#passkey-signin');
  await visible(page, '#account', 'the genuine passkey after the clone');
  await page.waitForSelector('#events li[data-kind="passkey_counter_regressed"]');
  await screenshot(page, 'security-events');

  // Remove it: a step-up (password + passkey), then the removal.
  await page.click('#passkeys li button:has-text("Remove")');
  await page.fill('#stepup-password', password);
  await page.click('#stepup-form button[type=submit]');
  await status(page, 'Passkey removed', 'removal');
  await visible(page, '#passkeys-empty', 'no passkey left');
  await screenshot(page, 'passkey-removed');

  // Without the passkey, the password alone signs in again.
  await signOut(page);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#password-form button[type=submit]');
  await visible(page, '#account', 'password sign-in after the removal');

  // The enterprise tier's policy blocks the virtual authenticator's model (its AAGUID): an
  // admin moves the account there, and the same authenticator is refused, with a reason.
  const upgrade = await fetch(`${api}/api/v1/users/${process.env.USER_ID}/upgrade`, {
    method: 'POST',
    headers: { authorization: `Bearer ${process.env.ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tier: 'enterprise' }),
  });
  expect(upgrade.status === 200, `the admin's upgrade answered ${upgrade.status}`);
  await page.fill('#passkey-label', 'Laptop again');
  await page.fill('#passkey-password', password);
  await page.click('#add-passkey');
  await status(page, 'blocked on this tier', 'the enterprise policy');
  await screenshot(page, 'enterprise-blocks-the-model');
});
