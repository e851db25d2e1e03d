// Budgets as the overview and the budgets page show them: a gauge per budget, with its stages.

import { gql } from './api.js';
import { gauge } from './charts.js';
import { h } from './dom.js';
import { money, percent } from './format.js';

export const BUDGET_FIELDS = 'id scope { kind id name } period limit currency basis hardCap thresholds customStart customEnd';
const STATUS_FIELDS = 'spent reserved remaining percentUsed stagesReached periodStart resetsAt';

export async function budgetsWithStatus(most = 20) {
  const { budgets } = await gql(`{ budgets { ${BUDGET_FIELDS} } }`);
  const shown = budgets.slice(0, most);
  if (!shown.length) return [];
  const fields = shown.map((b, i) => `s${i}: budgetStatus(budgetId: ${JSON.stringify(b.id)}) { ${STATUS_FIELDS} }`);
  const statuses = await gql(`{ ${fields.join(' ')} }`);
  return shown.map((budget, i) => ({ budget, status: statuses[`s${i}`] }));
}

export function scopeName(scope) {
  if (scope.kind === 'ORGANIZATION') return 'Organisation';
  const kind = scope.kind.charAt(0) + scope.kind.slice(1).toLowerCase();
  return `${kind} ${scope.name ?? scope.id.slice(0, 8)}`;
}

export function budgetGauge({ budget, status }) {
  const title = `${scopeName(budget.scope)} · ${budget.period.toLowerCase()} · ${budget.basis === 'AI_COST' ? 'AI cost' : 'billed usage'}`;
  return h('div', { class: 'gauge', 'data-budget': budget.id },
    h('h3', {}, title, budget.hardCap ? h('span', { class: 'tag' }, 'hard cap') : null),
    h('p', { class: 'gauge-figures' },
      h('span', { class: 'figure', 'data-value': status.spent }, money(status.spent, budget.currency)),
      ' of ',
      h('span', { class: 'figure budget-limit', 'data-value': budget.limit }, money(budget.limit, budget.currency)),
      ` · ${percent(status.percentUsed)} used · ${money(status.remaining, budget.currency)} left`),
    gauge({
      title: `${title}: ${percent(status.percentUsed)} used`,
      percentUsed: status.percentUsed,
      thresholds: budget.thresholds,
      reached: status.stagesReached,
    }));
}
