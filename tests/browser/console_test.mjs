// The web console in real headless Chromium (Debian's package, driven by playwright-core). Started
// by tests/integration/admin_console_test.cpp, which runs `mukai serve` with an admin listener,
// sends the messages through SMTP and checks afterwards that the released original arrived.
//
// Environment: MUKAI_URL (https://127.0.0.1:PORT), MUKAI_OPERATOR / MUKAI_OPERATOR_PASSWORD,
// MUKAI_VIEWER / MUKAI_VIEWER_PASSWORD, MUKAI_PDF_TOKEN (unique word in the PDF message's subject),
// MUKAI_HOSTILE_TOKEN (in the hostile message's subject), MUKAI_SCREENSHOT_DIR, CHROMIUM.
// Prints one JSON line {"released_id": ...} on success; exits 1 with the failed check otherwise.
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('MUKAI_URL');
const shots = env('MUKAI_SCREENSHOT_DIR');
let failures = 0;
const check = (ok, what) => {
  if (ok) {
    console.error(`ok: ${what}`);
  } else {
    failures++;
    console.error(`FAILED: ${what}`);
  }
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Chromium refuses its sandbox as root (CI runs as root); the pages come from our own server.
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});

// The console's certificate is the self-signed one made at first start: accepted here as an
// operator accepts it after comparing the logged fingerprint.
async function newSession() {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const dialogs = [];
  page.on('dialog', async (d) => {
    dialogs.push(d.message());
    await d.dismiss();
  });
  const consoleErrors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  return { context, page, dialogs, consoleErrors };
}

async function login(page, user, password) {
  await page.goto(`${base}/login`);
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForURL(`${base}/`), page.click('form.login button[type=submit]')]);
}

// Runs `action` (a click that submits a form or follows a link) and waits until the new document
// has loaded, so that the checks after it never see the old page or a half-parsed new one.
async function navigate(page, action) {
  const committed = page.waitForEvent('framenavigated', (f) => f === page.mainFrame());
  await action();
  await committed;
  await page.waitForLoadState('load');
}

async function search(page, text) {
  await page.fill('input[name=q]', text);
  await navigate(page, () => page.click('.searchrow button[type=submit]'));
}

async function csrfOf(page) {
  return page.getAttribute('header form input[name=csrf]', 'value');
}

let releasedId = '';
try {
  // --- operator: log in, search, open, release -----------------------------------------------
  const op = await newSession();
  const p = op.page;

  // A wrong password first: refused, and the form says so in Japanese.
  await p.goto(`${base}/login`);
  check((await p.getAttribute('html', 'lang')) === 'ja', 'the UI is Japanese by default');
  await p.fill('input[name=user]', env('MUKAI_OPERATOR'));
  await p.fill('input[name=password]', 'wrong password');
  await navigate(p, () => p.click('form.login button[type=submit]'));
  check((await p.textContent('p.error')).includes('パスワードが違います'), 'a wrong password is refused');

  await login(p, env('MUKAI_OPERATOR'), env('MUKAI_OPERATOR_PASSWORD'));
  const resp = await p.goto(`${base}/`);
  const headers = resp.headers();
  check(headers['content-security-policy']?.includes("default-src 'none'"), 'strict CSP header');
  check(headers['x-content-type-options'] === 'nosniff', 'nosniff header');
  check(headers['cache-control'] === 'no-store', 'no-store header');
  const cookies = await op.context.cookies();
  const sessionCookie = cookies.find((c) => c.name === '__Host-mukai_session');
  check(sessionCookie && sessionCookie.httpOnly && sessionCookie.secure && sessionCookie.sameSite === 'Strict',
        'session cookie is Secure, HttpOnly, SameSite=Strict');
  await p.screenshot({ path: `${shots}/admin-console-list.png`, fullPage: true });

  await search(p, env('MUKAI_PDF_TOKEN'));
  const rows = await p.locator('table.items tbody tr').count();
  check(rows === 1, `search for the PDF message finds exactly it (${rows} rows at ${p.url()}: ${await p.textContent('p.count')})`);
  await navigate(p, () => p.locator('table.items td.subject a').first().click());
  releasedId = p.url().split('/item/')[1];
  check(/^[A-Za-z0-9._-]+$/.test(releasedId), `detail page URL carries the ID (${releasedId})`);
  const partsText = await p.textContent('table.parts');
  check(partsText.includes('.pdf'), 'detail lists the PDF attachment by filename');
  check(partsText.includes('application/pdf'), 'detail shows the detected type');
  check(/[0-9a-f]{64}/.test(partsText), 'detail shows the SHA-256');
  check((await p.textContent('h1.subject')).includes(env('MUKAI_PDF_TOKEN')), 'detail shows the subject');
  check(await p.isVisible('pre.body'), 'detail shows the sanitized text the recipient got');
  await p.screenshot({ path: `${shots}/admin-console-detail.png`, fullPage: true });

  // English on request.
  await navigate(p, () => p.click('header a.lang'));
  check((await p.getAttribute('html', 'lang')) === 'en' && (await p.textContent('body')).includes('Release'),
        'English is switchable');
  await navigate(p, () => p.click('header a.lang'));
  check((await p.getAttribute('html', 'lang')) === 'ja', 'and back to Japanese');

  // A POST without the CSRF token, with the operator's own valid session: refused.
  const forged = await p.request.post(`${base}/item/${releasedId}/release`, { form: { confirm: 'yes' }, maxRedirects: 0 });
  check(forged.status() === 403, `POST without the CSRF token is refused (${forged.status()})`);
  const forgedApi = await p.request.post(`${base}/api/v1/items/${releasedId}/release`, { data: {} });
  check(forgedApi.status() === 403, `API POST without X-CSRF-Token is refused (${forgedApi.status()})`);

  await navigate(p, () => p.click('#release'));
  check((await p.textContent('p.warn')).length > 0, 'release asks for confirmation');
  await navigate(p, () => p.click('#confirm'));
  const result = await p.textContent('p.result');
  check((await p.textContent('h1')).includes('完了'), `release succeeded: ${result}`);
  await p.goto(`${base}/item/${releasedId}`);
  check((await p.textContent('span.status')).includes('解放済み'), 'the item is now released');
  check((await p.textContent('table.history')).includes('release'), 'the history records the release');

  // --- a message held whole: the release needs the "checked it myself" box ------------------------
  await p.goto(`${base}/`);
  await search(p, env('MUKAI_SEALED_TOKEN'));
  await navigate(p, () => p.locator('table.items td.subject a').first().click());
  const sealedId = p.url().split('/item/')[1];
  await navigate(p, () => p.click('#release'));
  check(await p.isVisible('#unverified-warning'), 'the confirmation warns that the held message was never inspected');
  await navigate(p, () => p.click('#confirm'));
  check((await p.textContent('h1')).includes('拒否'), 'without the box the release is refused');
  await p.goto(`${base}/item/${sealedId}`);
  check((await p.textContent('span.status')).includes('保留'), 'the held message is still held');
  await navigate(p, () => p.click('#release'));
  await p.check('#unverified');
  await navigate(p, () => p.click('#confirm'));
  check((await p.textContent('h1')).includes('完了'), `with the box it is released: ${await p.textContent('p.result')}`);

  // --- the hostile message renders as text -------------------------------------------------------
  await p.goto(`${base}/`);
  await search(p, env('MUKAI_HOSTILE_TOKEN'));
  const listTitle = await p.textContent('table.items td.subject a');
  check(listTitle.includes('<script>') && listTitle.includes('<img src=x onerror='), 'the list shows the hostile subject as text');
  await navigate(p, () => p.locator('table.items td.subject a').first().click());
  const h1 = await p.textContent('h1.subject');
  check(h1.includes("<script>alert('subject')</script>"), 'the detail shows the <script> subject as text');
  const files = await p.textContent('table.parts');
  check(files.includes('<img src=x onerror=alert(2)>') || files.includes('<script>'), 'the hostile filename is shown as text');
  const injected = await p.evaluate(() => ({
    scripts: document.querySelectorAll('script').length,
    imgs: document.querySelectorAll('img').length,
    flag: window.__mukai_xss === undefined ? 0 : 1,
  }));
  check(injected.scripts === 0 && injected.imgs === 0 && injected.flag === 0, `no element injected ${JSON.stringify(injected)}`);
  check(op.dialogs.length === 0, `no dialog opened (${op.dialogs.join(', ')})`);

  // --- a viewer sees no buttons and is refused ---------------------------------------------------
  const vw = await newSession();
  const v = vw.page;
  await login(v, env('MUKAI_VIEWER'), env('MUKAI_VIEWER_PASSWORD'));
  await v.goto(`${base}/item/${releasedId}`);
  check((await v.locator('#release').count()) === 0 && (await v.locator('#delete').count()) === 0,
        'a viewer sees no release or delete button');
  const token = await csrfOf(v);
  check(token && token.length === 64, 'the viewer has a CSRF token');
  const confirmPage = await v.request.get(`${base}/item/${releasedId}/release`);
  check(confirmPage.status() === 403, `the viewer cannot open the release confirmation (${confirmPage.status()})`);
  const viewerPost = await v.request.post(`${base}/item/${releasedId}/release`, {
    form: { csrf: token, confirm: 'yes' }, maxRedirects: 0 });
  check(viewerPost.status() === 403, `a forced POST by the viewer (valid token) gets 403 (${viewerPost.status()})`);
  const viewerDelete = await v.request.post(`${base}/api/v1/items/${releasedId}/delete`, { headers: { 'X-CSRF-Token': token } });
  check(viewerDelete.status() === 403, `a viewer's API delete gets 403 (${viewerDelete.status()})`);

  // Logged out: the session no longer works.
  await navigate(v, () => v.click('header form button[type=submit]'));
  const after = await v.request.get(`${base}/api/v1/stats`);
  check(after.status() === 401, `after logout the session is gone (${after.status()})`);

  for (const s of [op, vw]) check(s.consoleErrors.every((e) => !e.includes('Content Security Policy')), 'no CSP violation reported');
} catch (e) {
  failures++;
  console.error(`FAILED: ${e.stack || e}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify({ released_id: releasedId, failures }));
process.exit(failures === 0 ? 0 : 1);
