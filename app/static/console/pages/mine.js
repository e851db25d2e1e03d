// A member's page: its own accounts' allowance (tokens used of the included ones, the top-up
// balance, when it resets), kept live by allowanceChanged. Nothing of anyone else's.

import { allowances } from '../banner.js';
import { gauge } from '../charts.js';
import { card, figure, h } from '../dom.js';
import { count, dateTime, money } from '../format.js';
import { subscribe } from '../live.js';

const FIELDS = 'accountId planCode included used remaining topUpBalance currency banner resetsAt';

function allowanceCard(a) {
  const percentUsed = a.included ? (100 * a.used) / a.included : 0;
  return card(`Account ${a.accountId.slice(0, 8)}${a.planCode ? ` · ${a.planCode} plan` : ''}`,
    h('p', {}, figure(count(a.used), a.used, { class: 'figure own-used' }), ' of ', count(a.included), ' included tokens used · ',
      count(a.remaining), ' left · top-up balance ', money(a.topUpBalance, a.currency)),
    h('div', { class: 'gauge' }, gauge({ title: `${percentUsed.toFixed(0)} % of the included tokens used`, percentUsed, thresholds: [75, 100], reached: [75, 100].filter((t) => percentUsed >= t) })),
    h('p', { class: 'muted' }, a.resetsAt ? `Resets ${dateTime(a.resetsAt)}` : 'No allowance cycle.'));
}

export async function render(el, session) {
  const ids = session.access.accounts;
  if (!ids.length) {
    el.append(h('p', { class: 'empty' }, 'This token names no account of yours.'));
    return null;
  }
  const slots = new Map();
  for (const a of await allowances(ids)) {
    const slot = h('div', { 'data-account': a.accountId }, allowanceCard(a));
    slots.set(a.accountId, slot);
    el.append(slot);
  }
  const closers = ids.map((id) => subscribe(`subscription($id: ID!) { allowanceChanged(accountId: $id) { ${FIELDS} } }`, { id }, {
    next: ({ allowanceChanged: a }) => slots.get(a.accountId)?.replaceChildren(allowanceCard(a)),
  }));
  return () => closers.forEach((close) => close());
}
