// Usage by model, user, department, feature (and more), with filters and a period comparison.

import { gql } from '../api.js';
import { barChart } from '../charts.js';
import { controlsForm, directory, nameFinder, picker, rangeControls } from '../controls.js';
import { card, clear, errorMessage, field, figure, h, input, select, table } from '../dom.js';
import { count, money, percent, previousRange } from '../format.js';

const DIMENSIONS = [
  ['MODEL', 'Model', 'model'], ['USER', 'User', 'userId'], ['DEPARTMENT', 'Department', 'departmentId'],
  ['FEATURE', 'Feature', 'feature'], ['AGENT', 'Agent', 'agent'], ['CUSTOMER', 'Customer', 'customerId'],
  ['ACCOUNT', 'Account', 'accountId'], ['PROVIDER', 'Provider', 'provider'],
];

async function namesFor(dimension) {
  const kind = { USER: 'users', DEPARTMENT: 'departments', CUSTOMER: 'customers', ACCOUNT: 'accounts' }[dimension];
  return kind ? nameFinder(await directory(kind)) : (value) => value ?? '(none)';
}

function change(c) {
  if (!c) return '—';
  const sign = Number(c.absolute) > 0 ? '+' : '';
  return c.relative == null ? 'new' : `${sign}${percent(c.relative)}`;
}

export async function render(el, session) {
  const groupBy = select(DIMENSIONS.map(([v, l]) => [v, l]), 'MODEL', { name: 'groupBy' });
  const [customer, account, department, user] = await Promise.all([
    picker('customers'), picker('accounts'), picker('departments'), picker('users')]);
  const model = input({ name: 'model', placeholder: 'any model' });
  const feature = input({ name: 'feature', placeholder: 'any feature' });
  const compare = h('input', { type: 'checkbox', name: 'compare', id: 'usage-compare' });
  const range = rangeControls(session);
  const out = h('div', { class: 'results', id: 'usage-results' });
  const run = async () => {
    clear(out);
    out.setAttribute('aria-busy', 'true');
    try {
      const dimension = groupBy.value;
      const key = DIMENSIONS.find(([v]) => v === dimension)[2];
      const filter = Object.fromEntries(Object.entries({
        customerId: customer.value, accountId: account.value, departmentId: department.value, userId: user.value,
        model: model.value.trim(), feature: feature.value.trim(),
      }).filter(([, v]) => v));
      const current = range.range();
      const { usage } = await gql(`query($range: DateRange!, $groupBy: [UsageDimension!]!, $filter: UsageFilter, $currency: CurrencyCode, $compareTo: DateRange) {
        usage(range: $range, groupBy: $groupBy, filter: $filter, currency: $currency, compareTo: $compareTo) {
          model provider customerId accountId departmentId userId feature agent currency events tokens aiCost billedUsage
          comparison { previous { aiCost } aiCost { absolute relative } } } }`, {
        range: current, groupBy: [dimension], filter, currency: range.currency(),
        compareTo: compare.checked ? previousRange(current) : null,
      });
      const name = await namesFor(dimension);
      const rows = [...usage].sort((a, b) => Number(b.aiCost) - Number(a.aiCost));
      const columns = [
        { label: DIMENSIONS.find(([v]) => v === dimension)[1], cell: (r) => name(r[key]) },
        { label: 'Events', num: true, cell: (r) => count(r.events) },
        { label: 'Tokens', num: true, cell: (r) => count(r.tokens) },
        { label: 'AI cost', num: true, cell: (r) => figure(money(r.aiCost, r.currency), r.aiCost) },
        { label: 'Billed usage', num: true, cell: (r) => money(r.billedUsage, r.currency) },
      ];
      if (compare.checked) {
        columns.push({ label: 'AI cost, previous period', num: true, cell: (r) => (r.comparison ? money(r.comparison.previous.aiCost, r.currency) : '—') },
          { label: 'Change', num: true, cell: (r) => change(r.comparison?.aiCost) });
      }
      out.append(card('AI cost per group',
        barChart({ title: 'AI cost per group', items: rows.slice(0, 12).map((r) => ({ label: String(name(r[key])).slice(0, 28), value: Number(r.aiCost), text: money(r.aiCost, r.currency) })) }),
        table('Usage per group', columns, rows, { id: 'usage-table' })));
    } catch (error) {
      out.append(errorMessage(error));
    } finally {
      out.setAttribute('aria-busy', 'false');
    }
  };
  el.append(controlsForm('Usage filters', [
    field('Group by', groupBy), ...range.fields, field('Customer', customer), field('Account', account),
    field('Department', department), field('User', user), field('Model', model), field('Feature', feature),
    h('div', { class: 'field check' }, compare, h('label', { for: 'usage-compare' }, 'Compare with the previous period')),
  ], 'Show', run), out);
  await run();
}
