// Budgets: each with its gauge and stages, the forecast of its scope, a form to set one and,
// for each, a form to raise its limit (setBudget on the same scope, period and basis).

import { gql } from '../api.js';
import { budgetGauge, budgetsWithStatus, BUDGET_FIELDS, scopeName } from '../budgetviews.js';
import { directory, labelOf } from '../controls.js';
import { button, card, clear, errorMessage, field, form, h, input, select } from '../dom.js';
import { dateTime, money } from '../format.js';
import { forecastCard } from './overview.js';

const KINDS = [['ORGANIZATION', 'Organisation'], ['CUSTOMER', 'Customer'], ['ACCOUNT', 'Account'], ['DEPARTMENT', 'Department'], ['USER', 'User']];
const DIRECTORY_OF = { CUSTOMER: 'customers', ACCOUNT: 'accounts', DEPARTMENT: 'departments', USER: 'users' };

async function setBudget(input) {
  const data = await gql(`mutation($input: BudgetInput!) { setBudget(input: $input) { ${BUDGET_FIELDS} } }`, { input });
  return data.setBudget;
}

function thresholdsOf(text) {
  return text.split(/[\s,]+/).filter(Boolean).map((t) => Number.parseInt(t, 10));
}

function inputOf(budget, limit) {
  return {
    scope: budget.scope.kind === 'ORGANIZATION' ? { kind: 'ORGANIZATION' } : { kind: budget.scope.kind, id: budget.scope.id },
    period: budget.period, customStart: budget.customStart, customEnd: budget.customEnd,
    limit, currency: budget.currency, basis: budget.basis, hardCap: budget.hardCap, thresholds: budget.thresholds,
  };
}

function createForm(session, refresh) {
  const kind = select(KINDS, 'ORGANIZATION', { name: 'scopeKind' });
  const target = select([['', '—']], '', { name: 'scopeId' });
  const targetField = field('Who', target);
  const syncTarget = async () => {
    const source = DIRECTORY_OF[kind.value];
    targetField.hidden = !source;
    if (source) target.replaceChildren(...(await directory(source)).map((item) => h('option', { value: item.id }, labelOf(item))));
  };
  kind.addEventListener('change', syncTarget);
  syncTarget();
  const period = select([['MONTH', 'Month'], ['WEEK', 'Week'], ['DAY', 'Day'], ['QUARTER', 'Quarter']], 'MONTH', { name: 'period' });
  const limit = input({ name: 'limit', inputmode: 'decimal', required: true, placeholder: '500.00' });
  const currency = input({ name: 'currency', value: session.currency, maxlength: 3, size: 4, required: true });
  const basis = select([['AI_COST', 'AI cost'], ['BILLED_USAGE', 'Billed usage']], 'AI_COST', { name: 'basis' });
  const thresholds = input({ name: 'thresholds', value: '50, 75, 90, 100' });
  const hardCap = h('input', { type: 'checkbox', name: 'hardCap', id: 'budget-hard-cap' });
  return card('Set a budget', form('Set a budget', [
    field('Scope', kind), targetField, field('Period', period), field('Limit', limit), field('Currency', currency, 'ISO 4217'),
    field('Measured on', basis), field('Alert stages (%)', thresholds, 'comma-separated, e.g. 50, 75, 90, 100'),
    h('div', { class: 'field check' }, hardCap, h('label', { for: 'budget-hard-cap' }, 'Hard cap: refuse usage over the limit')),
  ], 'Save budget', async () => {
    const scope = kind.value === 'ORGANIZATION' ? { kind: 'ORGANIZATION' } : { kind: kind.value, id: target.value };
    const budget = await setBudget({
      scope, period: period.value, limit: limit.value.trim(), currency: currency.value.trim().toUpperCase(),
      basis: basis.value, hardCap: hardCap.checked, thresholds: thresholdsOf(thresholds.value),
    });
    refresh();
    return `Saved: ${scopeName(budget.scope)}, ${money(budget.limit, budget.currency)} per ${budget.period.toLowerCase()}.`;
  }));
}

function raiseForm(budget, refresh) {
  const limit = input({ name: 'limit', inputmode: 'decimal', required: true, value: budget.limit.replace(/\.?0+$/, '') });
  return form(`Raise the limit of ${scopeName(budget.scope)}`, [field(`New limit (${budget.currency})`, limit)], 'Change limit', async () => {
    await setBudget(inputOf(budget, limit.value.trim()));
    refresh();
    return 'Limit changed.';
  });
}

export async function render(el, session) {
  const list = h('div', { id: 'budget-list' });
  const forecastSlot = h('div');
  const refresh = async () => {
    clear(list);
    try {
      const rows = await budgetsWithStatus(50);
      if (!rows.length) list.append(h('p', { class: 'empty' }, 'No budget yet.'));
      for (const row of rows) {
        const slot = h('div');
        const forecastButton = button('Show forecast', async () => {
          const scope = row.budget.scope.kind === 'ORGANIZATION' ? { kind: 'ORGANIZATION' } : { kind: row.budget.scope.kind, id: row.budget.scope.id };
          try { clear(forecastSlot).append(await forecastCard(scope)); } catch (error) { clear(forecastSlot).append(errorMessage(error)); }
        });
        list.append(h('div', { class: 'budget-row' }, budgetGauge(row),
          h('p', { class: 'muted' }, `Stages ${row.budget.thresholds.join(', ')} % · period from ${dateTime(row.status.periodStart)}, resets ${dateTime(row.status.resetsAt)}`),
          h('div', { class: 'row-actions' }, forecastButton,
            session.access.manage ? button('Raise limit', () => clear(slot).append(raiseForm(row.budget, refresh)), { class: 'secondary' }) : null),
          slot));
      }
    } catch (error) {
      list.append(errorMessage(error));
    }
  };
  el.append(card('Budgets and their stages', list));
  if (session.access.manage) el.append(createForm(session, refresh));
  el.append(forecastSlot);
  await refresh();
}
