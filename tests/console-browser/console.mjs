// Drives the admin console in Debian's Chromium through playwright-core, as an org admin
// would, and prints what it saw as one JSON line for tests/api/console_browser.rs to
// check. Finds controls by their labels and accessible names, as a person (or a screen
// reader) does: a control without a name fails here.
//
//   node console.mjs '<config JSON>'
//
// config: base, org, admin {username, password}, other {username, password} (a human
// without org_admin), service_account {id, username} (disabled), request_id (a
// refusal), client {name, secret_hint}, chromium (path), screenshots (a folder, or null).

import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.argv[2]);
const seen = { csp_violations: [], console_errors: [] };

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  // Chromium as this machine runs it: no sandbox (root), and none of the background
  // connections a closed network refuses.
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});

function watch(page) {
  page.on('console', (m) => {
    const text = m.text();
    if (/Content[- ]Security[- ]Policy/i.test(text)) seen.csp_violations.push(text);
    else if (m.type() === 'error' && !/status of 40[34]/.test(text)) seen.console_errors.push(text);
  });
}

async function shot(page, name) {
  if (cfg.screenshots) await page.screenshot({ path: `${cfg.screenshots}/${name}.png`, fullPage: true });
}

async function logIn(page, who) {
  await page.goto(`${cfg.base}/admin/`);
  await page.getByLabel('Organization').fill(cfg.org);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByLabel('Username').fill(who.username);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForLoadState('load');
}

let page;
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await ctx.newPage();
  watch(page);

  // The org admin logs in through the org's login and lands on the overview.
  await logIn(page, cfg.admin);
  await page.waitForURL(/\/admin\/$/);
  await page.getByRole('heading', { name: /Disabled service accounts/ }).waitFor();
  seen.overview_lists_service_account = await page
    .getByRole('row', { name: new RegExp(cfg.service_account.username) })
    .count();
  await shot(page, 'console-overview');
  // The console's script shows times in the viewer's zone, with UTC on hover.
  seen.time_title = await page.locator('time').first().getAttribute('title');

  // Enables the service account an admin client disabled, from the overview.
  await page.getByRole('button', { name: `Enable ${cfg.service_account.username}` }).click();
  await page.waitForURL(/\/admin\/users\?changed=/);
  seen.notice = (await page.getByRole('status').textContent()).trim();
  await shot(page, 'console-users');

  // A form post without its CSRF token (the browser's own cookies): refused.
  const forged = await ctx.request.post(
    `${cfg.base}/admin/users/${cfg.service_account.id}/disable`,
    { form: { csrf: '' }, maxRedirects: 0 },
  );
  seen.post_without_csrf = forged.status();

  // Looks a refusal up by its request id and sees the failing check.
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.getByLabel('Request id').fill(cfg.request_id);
  await page.getByRole('button', { name: 'Look up' }).click();
  const failing = page.locator('ol.trace li[aria-current="step"]');
  await failing.waitFor();
  seen.failing_step = (await failing.textContent()).replace(/\s+/g, ' ').trim();
  seen.reason_link = await failing.getByRole('link').first().getAttribute('href');
  await shot(page, 'console-audit');

  // Rotates the client's secret with a day's grace: the new one is shown once, the old
  // one is listed as still valid until then.
  await page.getByRole('link', { name: 'Clients' }).click();
  await page.getByRole('link', { name: cfg.client.name }).click();
  await page.getByLabel('Grace period for the secrets in use now').selectOption('86400');
  await page.getByRole('button', { name: 'Rotate secret' }).click();
  const fresh = await page.getByLabel('New client secret').inputValue();
  seen.new_secret_prefix = fresh.slice(0, 5);
  seen.old_secret_listed = await page.getByText(`…${cfg.client.secret_hint}`).count();
  await shot(page, 'console-rotated');
  await page.getByRole('link', { name: `Back to ${cfg.client.name}` }).click();
  seen.secret_shown_again = (await page.content()).includes(fresh);

  // Opens the enforcement preview: who would change, and what it will not touch.
  await page.getByRole('link', { name: 'SSO' }).click();
  await page.getByRole('heading', { name: 'What it will not touch' }).waitFor();
  seen.preview_untouched = (
    await page.getByRole('heading', { name: 'What it will not touch' }).locator('xpath=following-sibling::p[1]').textContent()
  ).replace(/\s+/g, ' ').trim();
  seen.switch_needs_confirmation = await page
    .getByLabel('I have read what switching enforcement on changes')
    .evaluate((el) => el.required);
  await shot(page, 'console-sso');

  // Keyboard: the first control after the page's links is reachable by Tab.
  await page.keyboard.press('Tab');
  seen.first_tab_stop = await page.evaluate(() => document.activeElement?.textContent?.trim() ?? '');

  // On a phone: readable without sideways scrolling.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${cfg.base}/admin/users`);
  seen.phone_overflow = await page.evaluate(
    () => document.documentElement.scrollWidth > window.innerWidth + 1,
  );
  await shot(page, 'console-users-phone');

  // A person without org_admin is refused, and told why.
  const other = await browser.newContext();
  const otherPage = await other.newPage();
  watch(otherPage);
  await logIn(otherPage, cfg.other);
  seen.other_heading = (await otherPage.getByRole('heading', { level: 1 }).textContent()).trim();

  // Logging out ends the session: the console asks for the organization again.
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(`${cfg.base}/admin/`);
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('Organization').waitFor();
  seen.after_logout = page.url();

  console.log(JSON.stringify({ ok: true, seen }));
} catch (e) {
  // Where the browser was, and what it showed, for the failure message.
  seen.at = page?.url();
  seen.showing = (await page?.locator('body').textContent().catch(() => ''))?.replace(/\s+/g, ' ').slice(0, 400);
  console.log(JSON.stringify({ ok: false, error: String(e?.message ?? e), seen }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
