// The allowance banner: accounts at 75 % of their included tokens (BUY_MORE) or past them
// (EXHAUSTED), with "Buy more capacity". An admin tops the account up here; others are told who can.

import { gql, unwrap } from './api.js';
import { clear, field, form, h, input } from './dom.js';
import { count, money } from './format.js';

const FIELDS = 'accountId planCode included used remaining topUpBalance currency banner resetsAt';
const MOST_ACCOUNTS = 20; // one aliased field each, within the server's alias limit

async function accountIds(session) {
  if (session.access.member) return session.access.accounts;
  const data = await gql(`{ accounts(first: ${MOST_ACCOUNTS}) { nodes { id } } }`);
  return data.accounts.nodes.map((a) => a.id);
}

export async function allowances(ids) {
  if (!ids.length) return [];
  const fields = ids.map((id, i) => `a${i}: allowance(accountId: ${JSON.stringify(id)}) { ${FIELDS} }`);
  const data = await gql(`{ ${fields.join(' ')} }`);
  return ids.map((_, i) => data[`a${i}`]);
}

function topUpForm(allowance, done) {
  const amount = input({ inputmode: 'decimal', required: true, placeholder: '100.00', name: 'amount' });
  return form(`Top up ${allowance.accountId}`, [field(`Amount (${allowance.currency})`, amount)], 'Top up', async () => {
    const data = await gql(`mutation($input: DepositInput!) { deposit(input: $input) {
      __typename ... on LedgerEntryRecorded { entry { id amount currency } } ... on UserError { code message field } } }`, {
      input: {
        idempotencyKey: `console-top-up-${crypto.randomUUID()}`,
        accountId: allowance.accountId,
        amount: amount.value.trim(),
        currency: allowance.currency,
      },
    });
    const entry = unwrap(data.deposit).entry;
    done();
    return `Added ${money(entry.amount, entry.currency)}.`;
  });
}

function bannerOf(allowance, session, refresh) {
  const exhausted = allowance.banner === 'EXHAUSTED';
  const used = allowance.included ? Math.round((100 * allowance.used) / allowance.included) : 100;
  const text = exhausted
    ? `The included tokens of account ${allowance.accountId.slice(0, 8)} are used up`
    : `Account ${allowance.accountId.slice(0, 8)} has used ${used} % of its included tokens`;
  const detail = `${count(allowance.used)} of ${count(allowance.included)} tokens · top-up balance ${money(allowance.topUpBalance, allowance.currency)}`;
  const box = h('div', { class: `banner ${exhausted ? 'exhausted' : 'buy-more'}`, 'data-banner': allowance.banner, 'data-account': allowance.accountId },
    h('p', {}, h('strong', {}, text), ' — ', detail));
  if (session.access.manage) {
    const slot = h('div');
    box.append(h('button', { type: 'button', class: 'buy-more', onclick: () => clear(slot).append(topUpForm(allowance, refresh)) }, 'Buy more capacity'), slot);
  } else {
    box.append(h('p', {}, h('strong', {}, 'Buy more capacity: '), 'ask an organisation admin to top up this account.'));
  }
  return box;
}

export async function renderBanner(el, session) {
  const refresh = () => renderBanner(el, session);
  try {
    const shown = (await allowances(await accountIds(session))).filter((a) => a.banner !== 'NONE');
    clear(el).append(...shown.map((a) => bannerOf(a, session, refresh)));
  } catch {
    clear(el); // the banner is a hint: a failure here must not hide the page
  }
}
