// The staff console in a real browser: headless Chromium from Debian, driven by Playwright.
// Run by tests/server/auth.rs (`node console.mjs BASE_URL EPOCH_SECONDS SCHEDULER_CODE`) against
// a server on a manual clock frozen at EPOCH_SECONDS. When the script prints `advance-clock`
// it waits for a line on stdin: the test has moved the server's clock past the idle limit.
import { createHmac } from 'node:crypto';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const [base, epochText, schedulerCode] = process.argv.slice(2);
if (!base || !epochText || !schedulerCode) {
  console.error('usage: node console.mjs BASE_URL EPOCH_SECONDS SCHEDULER_CODE');
  process.exit(2);
}
const epoch = Number(epochText);
const PASSWORD = 'correct horse battery staple';

// RFC 6238 (SHA-1, 6 digits, 30-second steps), as an authenticator app computes it.
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of text.toUpperCase().replace(/[^A-Z2-7]/g, '')) {
    value = ((value << 5) | alphabet.indexOf(ch)) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}
function totp(secret, seconds) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(seconds / 30)));
  const mac = createHmac('sha1', base32(secret)).update(counter).digest();
  const o = mac[19] & 0xf;
  const n = ((mac[o] & 0x7f) << 24) | (mac[o + 1] << 16) | (mac[o + 2] << 8) | mac[o + 3];
  return String(n % 1000000).padStart(6, '0');
}

const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
let failed = false;
let page = null;
const errors = [];
try {
  const context = await browser.newContext();
  page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations = (window.__cspViolations || []).concat([e.violatedDirective]);
    });
  });
  const main = page.locator('#perimeter-console');
  const signIn = async (username, password) => {
    await page.fill('[data-pc="login"] input[name="username"]', username);
    await page.fill('[data-pc="login"] input[name="password"]', password);
    await page.click('[data-pc="login"] button[type="submit"]');
  };

  await page.goto(base + '/console');
  await page.locator('[data-pc="login"]').waitFor({ timeout: 10000 });

  // A wrong password: the one generic answer, still on the sign-in form.
  await signIn('scheduler', 'not the password at all');
  await page.locator('[data-pc="login"] [data-pc="error"]', { hasText: 'wrong username or password' }).waitFor();

  // The scheduler: password, then the authenticator's code.
  await signIn('scheduler', PASSWORD);
  await page.fill('[data-pc="mfa"] input[name="code"]', schedulerCode);
  await page.click('[data-pc="mfa"] button[type="submit"]');
  await page.locator('[data-pc="user"]', { hasText: 'scheduler (scheduler)' }).waitFor();
  check(!(await page.evaluate(() => document.cookie)).includes('perimeter_session'), 'the session cookie is HttpOnly');

  // Patient search and the record as a scheduler may see it: contact data, no identifiers.
  await page.selectOption('[data-pc="search"] select[name="by"]', 'name');
  await page.fill('[data-pc="search"] input[name="value"]', 'hopper grace');
  await page.click('[data-pc="search"] button[type="submit"]');
  await page.click('[data-pc="open-patient"]:has-text("Hopper, Grace")');
  await page.locator('[data-pc="record"]', { hasText: '(202) 555-0142' }).waitFor();
  await page.locator('[data-pc="withheld"]', { hasText: 'identifiers' }).waitFor();
  check(!(await main.textContent()).includes('MRN-0042'), 'the MRN is not on the page');

  // The conversation: the administrative message, the clinical one withheld by the server.
  await page.click('[data-pc="conversations"] [data-pc="open-conversation"]:has-text("Follow-up")');
  await page.locator('[data-pc="thread"] [data-pc="body"]', { hasText: "Can we move Tuesday's visit?" }).waitFor();
  await page.locator('[data-pc="thread"] [data-pc="withheld"]').first().waitFor();
  check(!(await page.content()).includes('wheezing'), 'the clinical body never reached the page');

  // A state-changing form: an internal note (sent with the CSRF token).
  await page.fill('[data-pc="note"] textarea[name="body"]', 'Called back; prefers Thursday mornings.');
  const [noteResponse] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/notes') && r.request().method() === 'POST'),
    page.click('[data-pc="note"] button[type="submit"]'),
  ]);
  check(noteResponse.status() === 201 || noteResponse.status() === 200, `the note was saved (status ${noteResponse.status()}: ${await noteResponse.text()})`);
  await page.locator('[data-pc="notes"] [data-pc="body"]', { hasText: 'prefers Thursday mornings' }).waitFor();

  // The same request without the CSRF token is refused, and the session goes on.
  const forged = await page.evaluate(async () => {
    const r = await fetch('/api/auth/logout-everywhere', { method: 'POST' });
    return r.status;
  });
  check(forged === 403, `a request without the CSRF token is refused (got ${forged})`);
  const still = await page.evaluate(async () => (await fetch('/api/auth/me')).status);
  check(still === 200, 'the session survived the forged request');

  // Signing out.
  await page.click('[data-pc="sign-out"]');
  await page.locator('[data-pc="notice"]', { hasText: 'You are signed out.' }).waitFor();
  const after = await page.evaluate(async () => (await fetch('/api/auth/me')).status);
  check(after === 401, 'the session ended on the server');

  // A new nurse without a second factor: enrolment with the QR code and the typed key.
  await signIn('newbie', PASSWORD);
  const qr = page.locator('[data-pc="qr"]');
  await qr.waitFor();
  check((await qr.getAttribute('src')).startsWith('data:image/svg+xml'), 'the QR code is shown');
  check(await qr.evaluate((img) => img.complete && img.naturalWidth > 0), 'the QR code rendered under the CSP');
  const secret = await page.locator('[data-pc="secret"]').textContent();
  check(secret.replace(/[^A-Z2-7]/gi, '').length >= 16, 'the key is shown for typing');
  await page.fill('[data-pc="enrol"] input[name="code"]', totp(secret, epoch));
  await page.click('[data-pc="enrol"] button[type="submit"]');
  const codes = page.locator('[data-pc="recovery-codes"] li');
  await codes.first().waitFor();
  check((await codes.count()) >= 8, 'recovery codes are shown once');
  await page.click('[data-pc="codes-saved"]');
  await page.locator('[data-pc="user"]', { hasText: 'newbie (nurse)' }).waitFor();
  await page.locator('[data-pc="queue-form"]').waitFor();

  // Automatic logoff: past the idle limit the next request finds the session ended.
  console.log('advance-clock');
  await nextLine();
  await page.click('[data-pc="queue-form"] button[type="submit"]');
  await page.locator('[data-pc="notice"]', { hasText: 'Your session has ended' }).waitFor();
  await page.locator('[data-pc="login"]').waitFor();

  const violations = await page.evaluate(() => window.__cspViolations || []);
  check(violations.length === 0, `no CSP violations (${violations.join(', ')})`);
  const unexpected = errors.filter((e) => !/status of 40[13]/.test(e));
  check(unexpected.length === 0, `no script errors: ${unexpected.join(' | ')}`);
  console.log('console browser test: ok');
} catch (e) {
  failed = true;
  console.error(String(e && e.stack ? e.stack : e));
  // What the console showed when the check failed (test data only).
  if (page) console.error('page text: ' + (await page.evaluate(() => document.body.innerText).catch((x) => String(x))));
  console.error('script errors: ' + errors.join(' | '));
} finally {
  lines.close();
  await browser.close();
}
process.exit(failed ? 1 : 0);
