// The patient web chat in a real browser: headless Chromium from Debian, driven by Playwright.
// Run by tests/webchat.rs (`node webchat.mjs BASE_URL`), which starts the server and answers
// the patient's scheduling message as a scheduler once it is in the queue.
import { chromium } from 'playwright-core';

const base = process.argv[2];
if (!base) {
  console.error('usage: node webchat.mjs BASE_URL');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
let failed = false;
try {
  const page = await browser.newPage();
  const violations = [];
  const errors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') { errors.push(m.text()); }
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations = (window.__cspViolations || []).concat([e.violatedDirective]);
    });
  });
  await page.goto(base + '/chat');
  const status = page.locator('[data-pc="status"]');
  await status.getByText('Not verified yet').waitFor({ timeout: 10000 });

  // Before verification: the message is taken, shown only locally, nothing from the record.
  await page.fill('[data-pc="compose"] textarea', 'Hello, is anyone there?');
  await page.click('[data-pc="compose"] button');
  await page.locator('[data-pc="log"] li[data-pc-from="you"]', { hasText: 'anyone there' }).waitFor();

  // A wrong birth date: the generic failure, still unverified.
  await page.fill('[data-pc="identity"] input[name="name"]', 'Grace Hopper');
  await page.fill('[data-pc="identity"] input[name="birth_date"]', '1956-12-10');
  await page.click('[data-pc="identity"] button');
  await page.locator('[data-pc="verify-error"]', { hasText: 'could not verify' }).waitFor();
  // The right one verifies; the stream says so.
  await page.fill('[data-pc="identity"] input[name="birth_date"]', '1956-12-09');
  await page.click('[data-pc="identity"] button');
  await status.getByText('Verified.').waitFor({ timeout: 10000 });
  if (await page.locator('[data-pc="verify"]').isVisible()) {
    throw new Error('the verification form is still shown after verification');
  }
  // What was written before verification is now shown from the patient's conversation, once.
  await page.locator('[data-pc="log"] li[data-pc-kind="inbound"]:not([data-pc-local])', { hasText: 'anyone there' }).waitFor({ timeout: 10000 });
  if ((await page.locator('[data-pc="log"] li', { hasText: 'anyone there' }).count()) !== 1) {
    throw new Error('the message written before verification is shown twice');
  }

  // A scheduling message; the test answers it as a scheduler; the reply arrives on the stream.
  await page.fill('[data-pc="compose"] textarea', 'Can I reschedule my appointment to Thursday?');
  await page.click('[data-pc="compose"] button');
  await page.locator('[data-pc="log"] li[data-pc-kind="inbound"]', { hasText: 'Thursday?' }).waitFor({ timeout: 10000 });
  await page.locator('[data-pc="log"] li[data-pc-from="staff"]', { hasText: 'Thursday at 9:30 is booked' }).waitFor({ timeout: 45000 });

  // An emergency: the practice-approved message is shown at once, as an alert.
  await page.fill('[data-pc="compose"] textarea', 'I have chest pain right now');
  await page.click('[data-pc="compose"] button');
  const alert = page.locator('[data-pc="log"] li[data-pc-kind="emergency"]');
  await alert.waitFor({ timeout: 5000 });
  const alertText = await alert.textContent();
  if (!/911/.test(alertText)) {
    throw new Error('the emergency message does not say to call 911: ' + alertText);
  }

  // Injected text is shown as text, never run.
  await page.fill('[data-pc="compose"] textarea', '<img src=x onerror="window.__xss=1">');
  await page.click('[data-pc="compose"] button');
  await page.locator('[data-pc="log"] li', { hasText: '<img src=x' }).waitFor({ timeout: 10000 });
  if (await page.evaluate(() => window.__xss === 1)) {
    throw new Error('chat text was run as HTML');
  }

  const csp = await page.evaluate(() => window.__cspViolations || []);
  violations.push(...csp);
  if (violations.length) { throw new Error('CSP violations: ' + violations.join(', ')); }
  const real = errors.filter((e) => !/401|Failed to load resource/.test(e));
  if (real.length) { throw new Error('console errors: ' + real.join(' | ')); }

  // Ending the chat ends the session.
  await page.click('[data-pc="end"]');
  await status.getByText('This chat has ended.').waitFor({ timeout: 5000 });
  console.log('webchat browser test: ok');
} catch (e) {
  failed = true;
  console.error('webchat browser test failed:', e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
