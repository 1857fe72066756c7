// The admin dashboard in a real browser: an admin opens /admin through the edge (the token
// rides in the Authorization header of every request the page makes), the charts render with
// the traffic the Rust test sent, the tables carry the numbers without JavaScript, the page
// refreshes itself, the CSP holds; a non-admin gets 403.
import { run, screenshot, expect } from './lib.mjs';

const EDGE = process.env.EDGE_URL;
const MIN_SIGNUPS = Number(process.env.MIN_SIGNUPS || '1');
const MIN_FAILED = Number(process.env.MIN_FAILED_LOGINS || '1');

function number(text) {
  return Number(String(text).replace(/[^0-9]/g, ''));
}

await run(async (browser) => {
  const admin = await browser.newContext({
    extraHTTPHeaders: { authorization: `Bearer ${process.env.ADMIN_TOKEN}` },
    viewport: { width: 1360, height: 900 },
  });
  const page = await admin.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));

  const response = await page.goto(`${EDGE}/admin`, { waitUntil: 'load' });
  expect(response && response.status() === 200, `GET /admin answered ${response && response.status()}`);
  const csp = response.headers()['content-security-policy'] || '';
  expect(csp.includes("script-src 'self'") && !csp.includes('unsafe'), `strict CSP: ${csp}`);

  // uPlot draws into canvases: every chart of the page is there and has ink on it.
  await page.waitForSelector('body[data-charts]', { timeout: 15000 });
  const charts = await page.evaluate(() => {
    const out = {};
    for (const el of document.querySelectorAll('.chart')) {
      const canvas = el.querySelector('canvas');
      let inked = 0;
      if (canvas) {
        const ctx = canvas.getContext('2d');
        const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) inked += 1;
      }
      out[el.id] = { canvas: !!canvas, inked, width: canvas ? canvas.width : 0 };
    }
    return out;
  });
  console.log('charts', JSON.stringify(charts));
  for (const id of ['chart-activity', 'chart-tiers', 'chart-risk']) {
    expect(charts[id] && charts[id].canvas, `${id} has a canvas`);
    expect(charts[id].inked > 200, `${id} has something drawn (${charts[id].inked} pixels)`);
  }

  // The activity series hold the test's traffic: uPlot's data, and the numbers on the page.
  const kpis = await page.evaluate(() => ({
    signups: document.getElementById('kpi-signups').textContent,
    failed: document.getElementById('kpi-failed').textContent,
    requests: document.getElementById('kpi-requests').textContent,
    securityFailed: document.getElementById('kpi-security-failed').textContent,
  }));
  console.log('kpis', JSON.stringify(kpis));
  expect(number(kpis.signups) >= MIN_SIGNUPS, `at least ${MIN_SIGNUPS} signups in the last hour: ${kpis.signups}`);
  expect(number(kpis.failed) >= MIN_FAILED, `at least ${MIN_FAILED} failed logins in the last hour: ${kpis.failed}`);
  expect(number(kpis.securityFailed) >= MIN_FAILED, `security counts failed logins: ${kpis.securityFailed}`);
  expect(number(kpis.requests) >= 1, `API requests are counted: ${kpis.requests}`);

  // The tier table: the free tier has at least the users the test signed up.
  const freeUsers = await page.evaluate(() => {
    for (const row of document.querySelectorAll('#table-tiers tbody tr')) {
      if (row.querySelector('th').textContent.trim() === 'free') return row.querySelectorAll('td.num')[0].textContent;
    }
    return '0';
  });
  expect(number(freeUsers) >= MIN_SIGNUPS, `free users in the tier table: ${freeUsers}`);
  const recent = await page.$$eval('#table-recent tbody tr', (rows) => rows.length);
  expect(recent >= 1, `recent security events are listed (${recent})`);

  // First paint, as the browser measured it.
  const paint = await page.evaluate(() => {
    const fcp = performance.getEntriesByType('paint').find((e) => e.name === 'first-contentful-paint');
    const nav = performance.getEntriesByType('navigation')[0];
    return { fcp: fcp ? Math.round(fcp.startTime) : null, response: nav ? Math.round(nav.responseEnd - nav.requestStart) : null };
  });
  console.log(`measured first-contentful-paint ${paint.fcp} ms, document ${paint.response} ms`);

  // Live: the page polls /admin/data and updates itself.
  const before = await page.textContent('#generated');
  await page.waitForFunction((t) => document.getElementById('generated').textContent !== t, before, { timeout: 20000 });
  const live = await page.getAttribute('#live', 'class');
  expect(live === 'on', `the refresh succeeded (${live})`);
  expect(problems.length === 0, `no console error or CSP violation: ${problems.join(' | ')}`);
  await screenshot(page, 'dashboard');

  // Without JavaScript the tables still carry the numbers.
  const plain = await browser.newContext({
    javaScriptEnabled: false,
    extraHTTPHeaders: { authorization: `Bearer ${process.env.ADMIN_TOKEN}` },
  });
  const noJs = await plain.newPage();
  await noJs.goto(`${EDGE}/admin`);
  const rows = await noJs.$$eval('#table-tiers tbody tr', (r) => r.length);
  expect(rows === 4, `four tier rows without JavaScript (${rows})`);
  await plain.close();

  // A non-admin is refused.
  const user = await browser.newContext({ extraHTTPHeaders: { authorization: `Bearer ${process.env.USER_TOKEN}` } });
  const other = await user.newPage();
  const refused = await other.goto(`${EDGE}/admin`);
  expect(refused && refused.status() === 403, `a non-admin got ${refused && refused.status()}`);
  expect((refused.headers()['content-type'] || '').startsWith('application/problem+json'), 'a problem answer');
  await screenshot(other, 'non-admin-403');
  await user.close();
  await admin.close();
});
