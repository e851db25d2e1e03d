// The ledger, newest first, with filters and pages; a user's name opens their drill-down
// (#/ledger?user=ID): their entries and their spend by model.

import { gql } from '../api.js';
import { controlsForm, directory, nameFinder, picker, rangeControls } from '../controls.js';
import { button, card, clear, errorMessage, field, figure, h, input, select, table } from '../dom.js';
import { count, dateTime, money } from '../format.js';

const TYPES = ['USAGE_CHARGE', 'DEPOSIT', 'SUBSCRIPTION_PAYMENT', 'REFUND', 'ADJUSTMENT', 'WITHDRAWAL', 'PLATFORM_FEE',
  'SUBSCRIPTION_FEE', 'SUBSCRIPTION_CREDIT'];
const ENTRY_FIELDS = 'id type occurredAt currency amount aiCost provider model inputTokens outputTokens userId accountId feature agent';

function entriesTable(entries, names, drill) {
  return table('Ledger entries', [
    { label: 'When', cell: (e) => dateTime(e.occurredAt) },
    { label: 'Type', cell: (e) => e.type.toLowerCase().replace(/_/g, ' ') },
    { label: 'Account', cell: (e) => names.account(e.accountId) },
    { label: 'User', cell: (e) => (e.userId ? h('a', { href: `#/ledger?user=${e.userId}`, onclick: (ev) => { ev.preventDefault(); drill(e.userId); } }, names.user(e.userId)) : '—') },
    { label: 'Model', cell: (e) => e.model ?? '—' },
    { label: 'Feature / agent', cell: (e) => [e.feature, e.agent].filter(Boolean).join(' / ') || '—' },
    { label: 'Tokens', num: true, cell: (e) => count(e.inputTokens + e.outputTokens) },
    { label: 'Amount', num: true, cell: (e) => figure(money(e.amount, e.currency), e.amount) },
    { label: 'AI cost', num: true, cell: (e) => money(e.aiCost, e.currency) },
  ], entries, { empty: 'No entry matches.', id: 'ledger-table' });
}

async function userSummary(userId, range, names) {
  const { usage } = await gql(`query($range: DateRange!, $filter: UsageFilter) { usage(range: $range, groupBy: [MODEL], filter: $filter) {
    model currency events tokens aiCost billedUsage } }`, { range, filter: { userId } });
  return card(`Spend of ${names.user(userId)} by model`, table(`Spend of ${names.user(userId)} by model`, [
    { label: 'Model', cell: (r) => r.model },
    { label: 'Events', num: true, cell: (r) => count(r.events) },
    { label: 'Tokens', num: true, cell: (r) => count(r.tokens) },
    { label: 'AI cost', num: true, cell: (r) => money(r.aiCost, r.currency) },
    { label: 'Billed usage', num: true, cell: (r) => money(r.billedUsage, r.currency) },
  ], usage, { id: 'user-drill' }));
}

export async function render(el, session) {
  const { params } = session;
  const [users, accounts] = await Promise.all([directory('users'), directory('accounts')]);
  const names = { user: nameFinder(users), account: nameFinder(accounts) };
  const type = select([['', 'Any'], ...TYPES.map((t) => [t, t.toLowerCase().replace(/_/g, ' ')])], '', { name: 'type' });
  const account = await picker('accounts');
  const user = await picker('users', { value: params.get('user') ?? '' });
  const model = input({ name: 'model', placeholder: 'any model' });
  const feature = input({ name: 'feature', placeholder: 'any feature' });
  const range = rangeControls(session, { currency: false });
  const out = h('div', { class: 'results', id: 'ledger-results' });
  let after = null;
  const pages = [];
  const run = async (cursor = null) => {
    clear(out);
    out.setAttribute('aria-busy', 'true');
    try {
      const filter = Object.fromEntries(Object.entries({
        range: range.range(), types: type.value ? [type.value] : null, accountId: account.value, userId: user.value,
        model: model.value.trim(), feature: feature.value.trim(),
      }).filter(([, v]) => v));
      const { ledger } = await gql(`query($filter: LedgerFilter, $after: String) { ledger(filter: $filter, first: 50, after: $after) {
        nodes { ${ENTRY_FIELDS} } pageInfo { hasNextPage endCursor } } }`, { filter, after: cursor });
      after = ledger.pageInfo.hasNextPage ? ledger.pageInfo.endCursor : null;
      if (user.value) out.append(await userSummary(user.value, range.range(), names));
      out.append(card('Entries', entriesTable(ledger.nodes, names, drill), h('div', { class: 'row-actions' },
        pages.length ? button('Newer', () => run(pages.pop() ?? null), { class: 'secondary' }) : null,
        after ? button('Older', () => { pages.push(cursor); run(after); }, { class: 'secondary' }) : null)));
    } catch (error) {
      out.append(errorMessage(error));
    } finally {
      out.setAttribute('aria-busy', 'false');
    }
  };
  const drill = (userId) => { user.value = userId; pages.length = 0; history.replaceState(null, '', `#/ledger?user=${userId}`); run(); };
  el.append(controlsForm('Ledger filters', [...range.fields, field('Type', type), field('Account', account), field('User', user),
    field('Model', model), field('Feature', feature)], 'Show', () => { pages.length = 0; run(); }), out);
  await run();
}
