// P&L: organisation, customer, account, an agent's AI P&L, or the platform (platform admins),
// over a range in a currency, with the timeline of revenue, AI cost and margin and cost by model.

import { gql } from '../api.js';
import { barChart, lineChart } from '../charts.js';
import { controlsForm, picker, rangeControls } from '../controls.js';
import { card, clear, errorMessage, field, figure, h, input, select, table } from '../dom.js';
import { count, day, money, percent } from '../format.js';

const FIGURES = 'currency revenue aiCost billedUsage markupEarned platformFees margin marginPercent eventCount missingRates { base quote }';

function figuresCard(title, pnl) {
  const row = (label, value, id) => h('tr', {}, h('th', { scope: 'row' }, label), h('td', { class: 'num' }, figure(money(value, pnl.currency), value, { id })));
  return card(title, h('table', { class: 'figures' }, h('caption', {}, `${title} in ${pnl.currency}`), h('tbody', {},
    row('Revenue', pnl.revenue, 'pnl-revenue'),
    row('AI cost', pnl.aiCost, 'pnl-ai-cost'),
    row('Billed usage', pnl.billedUsage, 'pnl-billed'),
    row('Markup earned', pnl.markupEarned, 'pnl-markup'),
    row('Platform fees', pnl.platformFees, 'pnl-fees'),
    row('Margin', pnl.margin, 'pnl-margin'),
    h('tr', {}, h('th', { scope: 'row' }, 'Margin %'), h('td', { class: 'num' }, figure(percent(pnl.marginPercent, 2), pnl.marginPercent, { id: 'pnl-margin-percent' }))),
    h('tr', {}, h('th', { scope: 'row' }, 'Usage events'), h('td', { class: 'num' }, figure(count(pnl.eventCount), pnl.eventCount, { id: 'pnl-events' }))))),
  pnl.missingRates?.length ? errorMessage(`No exchange rate for ${pnl.missingRates.map((p) => `${p.base}→${p.quote}`).join(', ')}: those amounts are not converted.`) : null);
}

function timelineCard(points, currency) {
  const values = (key) => points.map((p) => Number(p[key]));
  return card('Timeline', lineChart({
    title: `Revenue, AI cost and margin per bucket (${currency})`,
    labels: points.map((p) => day(p.start)),
    series: [
      { name: 'Revenue', key: 'revenue', values: values('revenue') },
      { name: 'AI cost', key: 'cost', values: values('aiCost') },
      { name: 'Margin', key: 'margin', values: values('margin') },
    ],
    format: (v) => money(v.toFixed(2), currency),
  }));
}

function byModelCard(rows, currency) {
  const sorted = [...rows].sort((a, b) => Number(b.aiCost) - Number(a.aiCost));
  return card('AI cost by model',
    barChart({ title: 'AI cost by model', items: sorted.slice(0, 10).map((r) => ({ label: r.key, value: Number(r.aiCost), text: money(r.aiCost, currency) })) }),
    table('AI cost by model', [
      { label: 'Model', cell: (r) => r.key },
      { label: 'Events', num: true, cell: (r) => count(r.eventCount) },
      { label: 'Tokens', num: true, cell: (r) => count(r.tokens.total) },
      { label: 'AI cost', num: true, cell: (r) => figure(money(r.aiCost, currency), r.aiCost) },
      { label: 'Billed usage', num: true, cell: (r) => money(r.billedUsage, currency) },
    ], sorted, { id: 'pnl-by-model' }));
}

function agentsCard(rows, currency) {
  return card('AI P&L by agent', table('AI P&L by agent', [
    { label: 'Agent', cell: (r) => r.key },
    { label: 'Events', num: true, cell: (r) => count(r.eventCount) },
    { label: 'Revenue attributed', num: true, cell: (r) => money(r.revenue, currency) },
    { label: 'AI cost', num: true, cell: (r) => money(r.aiCost, currency) },
    { label: 'Net impact', num: true, cell: (r) => money(r.netImpact, currency) },
  ], rows, { empty: 'No agent-tagged usage in this range.', id: 'pnl-agents' }));
}

async function showPlatform(out, range, currency) {
  const { platformPnl: p } = await gql(`query($range: DateRange!, $currency: CurrencyCode) {
    platformPnl(range: $range, currency: $currency) { currency totals { ${FIGURES.replace(' missingRates { base quote }', '')} }
      organizations { organization { name slug } revenue aiCost margin marginPercent eventCount } } }`, { range, currency });
  out.append(figuresCard('Platform P&L', p.totals), card('Organisations', table('P&L per organisation', [
    { label: 'Organisation', cell: (r) => r.organization.name },
    { label: 'Revenue', num: true, cell: (r) => money(r.revenue, p.currency) },
    { label: 'AI cost', num: true, cell: (r) => money(r.aiCost, p.currency) },
    { label: 'Margin', num: true, cell: (r) => money(r.margin, p.currency) },
    { label: 'Margin %', num: true, cell: (r) => percent(r.marginPercent, 2) },
  ], p.organizations)));
}

async function show(out, scope, range, currency, bucket) {
  const pnlField = {
    ORGANIZATION: 'organizationPnl(range: $range, currency: $currency, agent: $agent)',
    CUSTOMER: 'customerPnl(customerId: $id, range: $range, currency: $currency)',
    ACCOUNT: 'accountPnl(accountId: $id, range: $range, currency: $currency)',
  }[scope.kind];
  const declared = { ORGANIZATION: ', $agent: String', CUSTOMER: ', $id: ID!', ACCOUNT: ', $id: ID!' }[scope.kind];
  const data = await gql(`query($range: DateRange!, $currency: CurrencyCode, $scope: PnLScopeInput!, $bucket: TimeBucket!${declared}) {
    pnl: ${pnlField} { ${FIGURES} byModel { key eventCount tokens { total } aiCost billedUsage } topAgents(limit: 10) { key eventCount revenue aiCost netImpact } }
    timeline: pnlTimeline(scope: $scope, range: $range, bucket: $bucket, currency: $currency) { start revenue aiCost margin } }`,
  { range, currency, bucket, scope, id: scope.id, agent: scope.agent });
  out.append(figuresCard(scope.agent ? `AI P&L of agent ${scope.agent}` : 'P&L', data.pnl),
    timelineCard(data.timeline, data.pnl.currency), byModelCard(data.pnl.byModel, data.pnl.currency));
  if (!scope.agent) out.append(agentsCard(data.pnl.topAgents, data.pnl.currency));
}

export async function render(el, session) {
  const kinds = [['ORGANIZATION', 'Organisation'], ['CUSTOMER', 'Customer'], ['ACCOUNT', 'Account'], ['AGENT', 'AI P&L of an agent']];
  if (session.access.platform) kinds.push(['PLATFORM', 'Platform (every organisation)']);
  const kind = select(kinds, 'ORGANIZATION', { name: 'kind' });
  const [customers, accounts] = await Promise.all([picker('customers', { any: 'Choose…' }), picker('accounts', { any: 'Choose…' })]);
  const agent = input({ name: 'agent', placeholder: 'triage-bot' });
  const bucket = select([['DAY', 'Day'], ['WEEK', 'Week'], ['MONTH', 'Month']], 'DAY', { name: 'bucket' });
  const range = rangeControls(session);
  const which = { CUSTOMER: field('Customer', customers), ACCOUNT: field('Account', accounts), AGENT: field('Agent', agent) };
  const sync = () => { for (const [k, f] of Object.entries(which)) f.hidden = kind.value !== k; };
  kind.addEventListener('change', sync);
  sync();
  const out = h('div', { class: 'results', id: 'pnl-results' });
  const run = async () => {
    out.setAttribute('aria-busy', 'true');
    try {
      clear(out);
      const k = kind.value;
      if (k === 'PLATFORM') return await showPlatform(out, range.range(), range.currency());
      const scope = k === 'AGENT' ? { kind: 'ORGANIZATION', agent: agent.value.trim() || null }
        : k === 'ORGANIZATION' ? { kind: 'ORGANIZATION' } : { kind: k, id: (k === 'CUSTOMER' ? customers : accounts).value };
      if ((k === 'CUSTOMER' || k === 'ACCOUNT') && !scope.id) throw new Error(`choose a ${k.toLowerCase()}`);
      await show(out, scope, range.range(), range.currency(), bucket.value);
    } catch (error) {
      out.append(errorMessage(error));
    } finally {
      out.setAttribute('aria-busy', 'false');
    }
  };
  el.append(controlsForm('P&L range', [field('Scope', kind), ...Object.values(which), ...range.fields, field('Bucket', bucket)], 'Show', run), out);
  await run();
}
