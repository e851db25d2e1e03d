// Shared controls: a date range with currency, and pickers of customers, accounts and users.

import { gql } from './api.js';
import { field, h, input, select } from './dom.js';
import { lastDays, rangeOf } from './format.js';

export function rangeControls(session, { days = 30, currency = true } = {}) {
  const initial = lastDays(days);
  const from = input({ type: 'date', value: initial.from, name: 'from', required: true });
  const to = input({ type: 'date', value: initial.to, name: 'to', required: true });
  const code = input({ value: session.currency, name: 'currency', maxlength: 3, size: 4, pattern: '[A-Za-z]{3}', autocomplete: 'off' });
  return {
    fields: [field('From', from), field('To (inclusive)', to), currency ? field('Currency', code, 'ISO 4217') : null],
    range: () => rangeOf(from.value, to.value),
    currency: () => code.value.trim().toUpperCase() || session.currency,
  };
}

const DIRECTORY = {
  customers: '{ customers(first: 100) { nodes { id name } } }',
  accounts: '{ accounts(first: 100) { nodes { id name currency } } }',
  users: '{ users(first: 100) { nodes { id name email } } }',
  departments: '{ departments(first: 100) { nodes { id name } } }',
};
const cache = new Map();

export async function directory(kind) {
  if (!cache.has(kind)) cache.set(kind, gql(DIRECTORY[kind]).then((data) => data[kind].nodes).catch((e) => { cache.delete(kind); throw e; }));
  return cache.get(kind);
}

export function labelOf(item) {
  return item.name ?? item.email ?? item.id;
}

export async function picker(kind, { any = 'Any', value = '', name } = {}) {
  const items = await directory(kind);
  return select([['', any], ...items.map((item) => [item.id, labelOf(item)])], value, { name: name ?? kind });
}

export function nameFinder(items) {
  const names = new Map(items.map((item) => [item.id, labelOf(item)]));
  return (id) => (id ? names.get(id) ?? id.slice(0, 8) : '—');
}

export function controlsForm(label, fields, submitText, onSubmit) {
  const el = h('form', { class: 'controls', 'aria-label': label }, fields, h('div', { class: 'actions' }, h('button', { type: 'submit' }, submitText)));
  el.addEventListener('submit', (event) => { event.preventDefault(); onSubmit(); });
  return el;
}
