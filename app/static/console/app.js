// The console's shell: sign-in with a pasted token, the role-aware navigation, the allowance
// banner and the hash router (#/overview, #/pnl, …) that renders one page module at a time.

import { ApiError, forgetToken, gql, keepToken, storedToken, tokenClaims } from './api.js';
import { accessOf } from './access.js';
import { renderBanner } from './banner.js';
import { append, clear, errorMessage, h } from './dom.js';
import { setServerNow } from './format.js';

const PAGES = [
  { path: 'overview', title: 'Overview', load: () => import('./pages/overview.js'), need: 'readUsage' },
  { path: 'pnl', title: 'P&L', load: () => import('./pages/pnl.js'), need: 'readLedger' },
  { path: 'usage', title: 'Usage', load: () => import('./pages/usage.js'), need: 'readUsage' },
  { path: 'budgets', title: 'Budgets', load: () => import('./pages/budgets.js'), need: 'readUsage' },
  { path: 'alerts', title: 'Alerts', load: () => import('./pages/alerts.js'), need: 'readUsage' },
  { path: 'reports', title: 'Reports', load: () => import('./pages/reports.js'), need: 'readUsage' },
  { path: 'ledger', title: 'Ledger', load: () => import('./pages/ledger.js'), need: 'readLedger' },
  { path: 'mine', title: 'My usage', load: () => import('./pages/mine.js'), need: 'member' },
];

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let session = null;
let cleanup = null;

function parseHash() {
  const [path, query = ''] = location.hash.replace(/^#\/?/, '').split('?');
  return { path, params: new URLSearchParams(query) };
}

function pagesFor(access) {
  return PAGES.filter((page) => access[page.need]);
}

async function signIn() {
  const data = await gql('{ now me { subject roles scopes } organization { id name reportingCurrency } }');
  setServerNow(data.now);
  const access = accessOf(data.me, tokenClaims());
  session = { me: data.me, org: data.organization, access, currency: data.organization.reportingCurrency };
  document.getElementById('signin').hidden = true;
  document.getElementById('who').hidden = false;
  document.getElementById('who-text').textContent =
    `${data.organization.name} · ${data.me.subject} (${data.me.roles.join(', ') || data.me.scopes?.join(' ')})`;
  document.body.dataset.roles = data.me.roles.join(' ');
  clear(nav).append(h('ul', {}, pagesFor(access).map((page) =>
    h('li', {}, h('a', { href: `#/${page.path}`, 'data-page': page.path }, page.title)))));
  renderBanner(document.getElementById('banner'), session);
  await route();
}

async function route() {
  if (!session) return;
  const allowed = pagesFor(session.access);
  const { path, params } = parseHash();
  const page = allowed.find((p) => p.path === path) ?? allowed[0];
  if (!page) {
    clear(main).append(errorMessage('This token opens no page of the console.'));
    return;
  }
  if (page.path !== path) {
    history.replaceState(null, '', `#/${page.path}`);
  }
  for (const link of nav.querySelectorAll('a')) {
    if (link.dataset.page === page.path) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  cleanup?.();
  cleanup = null;
  document.title = `${page.title} · CostGraph console`;
  const content = h('div', { class: 'page', 'data-page': page.path, 'aria-busy': 'true' });
  clear(main).append(h('h1', {}, page.title), content);
  try {
    const module = await page.load();
    cleanup = (await module.render(content, { ...session, params, navigate })) ?? null;
  } catch (error) {
    content.append(errorMessage(error));
  } finally {
    content.setAttribute('aria-busy', 'false');
  }
}

function navigate(path) {
  location.hash = `#/${path}`;
}

function showSignIn(message) {
  session = null;
  cleanup?.();
  document.getElementById('signin').hidden = false;
  document.getElementById('who').hidden = true;
  clear(nav);
  clear(document.getElementById('banner'));
  append(clear(main), [
    h('h1', {}, 'CostGraph console'),
    h('p', {}, 'Paste an access token above to sign in (for example the one `costgraph demo` or ',
      h('code', {}, 'costgraph token --org demo --role org_admin'), ' prints). It stays in this tab only.'),
    message ? errorMessage(message) : null,
  ]);
}

document.getElementById('signin').addEventListener('submit', async (event) => {
  event.preventDefault();
  const token = document.getElementById('token').value.trim();
  if (!token) return;
  keepToken(token);
  document.getElementById('token').value = '';
  try {
    await signIn();
  } catch (error) {
    forgetToken();
    showSignIn(error instanceof ApiError ? error : new Error(String(error)));
  }
});

document.getElementById('signout').addEventListener('click', () => {
  forgetToken();
  showSignIn();
});

window.addEventListener('hashchange', route);

if (storedToken()) {
  signIn().catch((error) => { forgetToken(); showSignIn(error); });
} else {
  showSignIn();
}
document.body.dataset.ready = 'true';
