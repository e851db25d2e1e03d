// Overview: this month's spend, the budget gauges, the forecast band and live usage.

import { gql } from '../api.js';
import { budgetGauge, budgetsWithStatus } from '../budgetviews.js';
import { forecastBand } from '../charts.js';
import { card, errorMessage, figure, h } from '../dom.js';
import { count, dateTime, money, percent } from '../format.js';
import { subscribe } from '../live.js';

// The server's month (its clock and time zone), as the forecast of the organisation counts it.
async function thisMonth() {
  const { forecast } = await gql('{ forecast(scope: { kind: ORGANIZATION }) { periodStart periodEnd } }');
  return { start: forecast.periodStart, end: forecast.periodEnd };
}

async function spendCard() {
  const { organizationPnl: pnl } = await gql(`query($range: DateRange!) {
    organizationPnl(range: $range) { currency revenue aiCost billedUsage margin marginPercent eventCount } }`,
  { range: await thisMonth() });
  const tile = (label, value, id) => h('div', { class: 'tile' }, h('span', { class: 'tile-label' }, label),
    figure(money(value, pnl.currency), value, { id }));
  return card('This month',
    h('div', { class: 'tiles' },
      tile('AI cost', pnl.aiCost, 'month-ai-cost'),
      tile('Billed usage', pnl.billedUsage, 'month-billed'),
      tile('Revenue', pnl.revenue, 'month-revenue'),
      tile('Margin', pnl.margin, 'month-margin'),
      h('div', { class: 'tile' }, h('span', { class: 'tile-label' }, 'Margin %'), figure(percent(pnl.marginPercent), pnl.marginPercent)),
      h('div', { class: 'tile' }, h('span', { class: 'tile-label' }, 'Usage events'), figure(count(pnl.eventCount), pnl.eventCount))));
}

async function budgetsCard() {
  const rows = await budgetsWithStatus();
  return card('Budgets', rows.length
    ? h('div', { class: 'gauges', id: 'overview-budgets' }, rows.map(budgetGauge))
    : h('p', { class: 'empty', id: 'overview-budgets' }, 'No budget yet: set one on the Budgets page.'));
}

export async function forecastCard(scope = { kind: 'ORGANIZATION' }) {
  const { forecast: f } = await gql(`query($scope: BudgetScopeInput!) { forecast(scope: $scope) {
    currency spent projectedTotal limit limitReached limitCrossedOn probabilityOverLimit method note periodStart periodEnd
    interval80 { low high } interval95 { low high }
    days { date observed cumulative cumulativeInterval80 { low high } cumulativeInterval95 { low high } } } }`, { scope });
  const m = (v) => money(v, f.currency);
  const range = (iv) => (iv ? `${m(iv.low)} – ${m(iv.high)}` : '—');
  return card('Forecast for the period',
    h('p', {}, 'Spent ', figure(m(f.spent), f.spent), ', projected ', figure(m(f.projectedTotal), f.projectedTotal, { id: 'forecast-total' }),
      ` (80 %: ${range(f.interval80)}; 95 %: ${range(f.interval95)})`,
      f.limit != null ? ` against a limit of ${m(f.limit)}` : '', f.limitCrossedOn ? `, crossing it on ${f.limitCrossedOn}` : '', '.'),
    forecastBand({ title: 'Cumulative spend this period, observed and projected', days: f.days, limit: f.limit, format: (v) => money(v.toFixed(2), f.currency) }),
    h('p', { class: 'muted' }, `${f.method.toLowerCase()} · ${f.note}`));
}

function liveCard() {
  const state = h('span', { id: 'live-state', class: 'tag' }, 'connecting');
  const totals = h('div', { id: 'live-totals', class: 'tiles' }, h('p', { class: 'muted' }, 'Waiting for the first snapshot…'));
  const last = h('p', { id: 'live-last', 'aria-live': 'polite' }, 'No usage event since this page opened.');
  const el = card('Live usage this month', h('p', {}, 'Feed: ', state), totals, last);
  const close = subscribe(`subscription { usageUpdates { kind periodStart periodEnd eventsIncluded
      totals { currency events totalTokens aiCost billedUsage }
      event { entryId currency totalTokens aiCost occurredAt } } }`, {}, {
    status: (text) => { state.textContent = text; },
    error: (errors) => { state.textContent = 'stopped'; last.replaceChildren(errorMessage(errors[0]?.message ?? 'subscription failed')); },
    next: ({ usageUpdates: u }) => {
      state.textContent = u.kind === 'INTERRUPTED' ? 'interrupted' : 'live';
      totals.replaceChildren(...u.totals.map((t) => h('div', { class: 'tile', 'data-currency': t.currency },
        h('span', { class: 'tile-label' }, `AI cost (${t.currency})`), figure(money(t.aiCost, t.currency), t.aiCost, { class: 'figure live-cost' }),
        h('span', { class: 'tile-sub' }, `${count(t.events)} events · ${count(t.totalTokens)} tokens`, h('span', { class: 'live-events', 'data-value': t.events, hidden: true })))));
      if (!u.totals.length) totals.replaceChildren(h('p', { class: 'muted' }, 'No usage this month yet.'));
      if (u.event) {
        last.textContent = `Last event: ${count(u.event.totalTokens)} tokens, ${money(u.event.aiCost, u.event.currency)} at ${dateTime(u.event.occurredAt)}`;
        last.dataset.entry = u.event.entryId;
      }
    },
  });
  return { el, close };
}

export async function render(el) {
  const live = liveCard();
  const slots = [h('div'), h('div'), h('div')];
  el.append(slots[0], slots[1], live.el, slots[2]);
  const fill = async (slot, make) => {
    try { slot.replaceWith(await make()); } catch (error) { slot.replaceWith(errorMessage(error)); }
  };
  await Promise.all([fill(slots[0], spendCard), fill(slots[1], budgetsCard), fill(slots[2], () => forecastCard())]);
  return live.close;
}
