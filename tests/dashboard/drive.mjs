// Drives the wsgate operator dashboard in Debian's Chromium (headless) for tests/dashboard.rs.
//
// Env: DASHBOARD_URL (http://host:port/dashboard/), ADMIN_TOKEN, SCREENSHOT (PNG path),
// EXPECT_NODES (comma-separated node ids), MAPPER (name), VERSION (the version to promote),
// OPERATOR (the name the audit log records), CHROMIUM (default /usr/bin/chromium).
//
// Checks that nothing shows without an accepted token, that the cluster table lists every
// expected node with live traffic, then promotes MAPPER to VERSION and rolls it back through the
// UI. Stdout carries only the protocol lines PROMOTED and ROLLED_BACK, after each of which it
// waits for a line NEXT on stdin; progress goes to stderr. Exits 0 when every check passed.

import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const TIMEOUT_MS = 60_000;
const TOKEN_KEY = 'wsgate.adminToken';

function fail(message) {
  throw new Error(message);
}

function env(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is not set`);
  return value;
}

function log(message) {
  process.stderr.write(`dashboard: ${message}\n`);
}

/** The lines arriving on stdin, one at a time. */
const stdinLines = (() => {
  const queue = [];
  const waiting = [];
  createInterface({ input: process.stdin }).on('line', (line) => {
    const next = waiting.shift();
    if (next) next(line);
    else queue.push(line);
  });
  return () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((resolve) => waiting.push(resolve)));
})();

async function waitForNext(after) {
  const line = await Promise.race([
    stdinLines(),
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no NEXT on stdin within 120 s after ${after}`)), 120_000)),
  ]);
  if (line.trim() !== 'NEXT') fail(`expected NEXT on stdin after ${after}, got ${JSON.stringify(line)}`);
}

const byTestId = (id) => `[data-testid="${id}"]`;

/** The page's visible text must not contain any node id or the dashboard's data views. */
async function assertNothingShown(page, nodes, when) {
  const text = await page.locator('body').innerText();
  for (const node of nodes) {
    if (text.includes(node)) fail(`${when}: node id ${node} is shown without an accepted token`);
  }
  for (const id of ['dashboard', 'cluster-table', 'node-connections', 'mappers-table', 'history-table']) {
    if ((await page.locator(byTestId(id)).count()) > 0) fail(`${when}: ${id} is shown without an accepted token`);
  }
  if (/msg\/s|binance_|wsgate_/.test(text)) fail(`${when}: metrics or mapper names are shown: ${text}`);
}

/** Waits until `read()` (polled) satisfies `ok`, or fails with `what`. */
async function until(what, read, ok, timeout = TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await read();
    if (ok(last)) return last;
    if (Date.now() > deadline) fail(`timed out waiting for ${what} (last seen: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const numberAt = (page, selector) =>
  page
    .locator(selector)
    .first()
    .getAttribute('data-value', { timeout: 1000 })
    .then((v) => (v === null ? null : Number(v)))
    .catch(() => null);

async function confirmAction(page, buttonTestId) {
  await page.locator(byTestId(buttonTestId)).click();
  await page.locator(byTestId('confirm-yes')).click();
}

async function signIn(page, token, operator = '') {
  await page.locator(byTestId('token-input')).fill(token);
  await page.locator(byTestId('operator-input')).fill(operator);
  await page.locator(byTestId('token-submit')).click();
}

async function main() {
  const url = env('DASHBOARD_URL');
  const token = env('ADMIN_TOKEN');
  const screenshot = env('SCREENSHOT');
  const nodes = env('EXPECT_NODES').split(',').map((s) => s.trim()).filter(Boolean);
  const mapper = env('MAPPER');
  const version = Number(env('VERSION'));
  if (!Number.isInteger(version) || version < 2) fail(`VERSION must be a version number above 1, got ${process.env.VERSION}`);

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
    headless: true,
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.setDefaultTimeout(TIMEOUT_MS);
    // Every API call must carry a bearer token.
    const unauthenticated = [];
    page.on('request', (request) => {
      if (new URL(request.url()).pathname.startsWith('/api/') && !request.headers().authorization?.startsWith('Bearer ')) {
        unauthenticated.push(`${request.method()} ${request.url()}`);
      }
    });

    // 1. No token: only the form. A wrong token: the form stays with the API's error.
    log(`opening ${url}`);
    const response = await page.goto(url);
    if (!response || !response.ok()) fail(`GET ${url} answered ${response?.status()}`);
    await page.locator(byTestId('token-form')).waitFor();
    await page.waitForTimeout(500);
    await assertNothingShown(page, nodes, 'without a token');
    await signIn(page, `${token}-wrong`);
    const authError = await page.locator(byTestId('auth-error')).innerText();
    log(`a wrong token is refused: ${authError}`);
    await page.waitForTimeout(500);
    await assertNothingShown(page, nodes, 'with a wrong token');
    if (await page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY)) fail('a refused token was kept in sessionStorage');

    // 2. The token: every node appears, and the cluster delivers messages.
    await signIn(page, token, process.env.OPERATOR ?? '');
    await page.locator(byTestId('cluster-table')).waitFor();
    for (const node of nodes) {
      await until(`node ${node} ready in the cluster table`, () =>
        page.locator(`${byTestId(`cluster-row-${node}`)} ${byTestId('node-state')}`).innerText({ timeout: 1000 }).catch(() => null), (s) => s === 'ready');
    }
    const rates = [];
    for (let i = 0; i < 2; i++) {
      if (i > 0) await page.waitForTimeout(2500);
      rates.push(await until('a cluster msg/s above 0', () => numberAt(page, byTestId('cluster-msg-rate')), (r) => r !== null && r > 0));
    }
    log(`nodes ${nodes.join(', ')} listed; cluster msg/s ${rates.map((r) => r.toFixed(1)).join(' then ')}`);
    await until("this node's connections", () => numberAt(page, byTestId('node-connections')), (v) => v !== null);

    // 3. The mapper: a refused action shows the API's error; promote, then roll back.
    const promoted = () => numberAt(page, byTestId(`mapper-promoted-${mapper}`));
    const before = await until(`${mapper} in the mappers table`, promoted, (v) => v !== null);
    if (before === version) fail(`${mapper} already promotes v${version}`);
    if (before === 1) {
      await confirmAction(page, `rollback-${mapper}`);
      const refused = await page.locator(byTestId('mapper-action-error')).innerText();
      log(`a rollback below v1 is refused: ${refused}`);
      if ((await promoted()) !== 1) fail('a refused rollback changed the promoted version');
    }
    await confirmAction(page, `promote-${mapper}-${version}`);
    await until(`${mapper} v${version} promoted`, promoted, (v) => v === version);
    const row = page.locator(byTestId(`mapper-${mapper}-v${version}`));
    if ((await row.getAttribute('data-promoted')) !== 'true') fail(`the v${version} row is not marked promoted`);
    log(`promoted ${mapper} v${version}: ${await page.locator(byTestId('mapper-action-ok')).innerText()}`);
    process.stdout.write('PROMOTED\n');
    await waitForNext('PROMOTED');

    await confirmAction(page, `rollback-${mapper}`);
    await until(`${mapper} rolled back to v${before}`, promoted, (v) => v === before);
    log(`rolled back to v${before}`);
    process.stdout.write('ROLLED_BACK\n');
    await waitForNext('ROLLED_BACK');

    // The config view compares a stored version with the current one.
    await page.locator(byTestId('config-view-1')).click();
    await page.locator(byTestId('config-diff')).waitFor();

    // 4. The screenshot, once the history shows both mapper actions.
    await until('the promote and the rollback in the audit log', () => page.locator(byTestId('history-table')).innerText().catch(() => ''),
      (t) => t.includes('mapper.promote') && t.includes('mapper.rollback'));
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: screenshot, fullPage: true });
    log(`screenshot saved to ${screenshot}`);

    // A 401 while signed in (the token was changed on the node) signs out: the form, the API's
    // reason, and no data.
    await page.route('**/api/v1/**', (route) =>
      route.fulfill({ status: 401, contentType: 'application/json', body: '{"error":"missing or wrong bearer token"}' }));
    await page.locator(byTestId('auth-error')).waitFor();
    await assertNothingShown(page, nodes, 'after a 401 while signed in');
    if (await page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY)) fail('a token refused while signed in was kept in sessionStorage');
    await page.unroute('**/api/v1/**');

    // A stored token the API no longer accepts signs out with the API's reason.
    await page.evaluate((k) => sessionStorage.setItem(k, 'stale-token'), TOKEN_KEY);
    await page.reload();
    await page.locator(byTestId('auth-error')).waitFor();
    await assertNothingShown(page, nodes, 'after a stale token');
    if (await page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY)) fail('a stale token was kept in sessionStorage');

    if (unauthenticated.length) fail(`API calls without a bearer token: ${unauthenticated.join('; ')}`);
  } finally {
    await browser.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`dashboard test failed: ${e.message}\n`);
    process.exit(1);
  },
);
