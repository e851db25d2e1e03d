// A few DOM helpers: elements, labelled fields, tables, cards and messages.

let ids = 0;

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value == null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

// A labelled control: the label names it for screen readers and clicking it focuses it.
export function field(label, control, hint) {
  if (!control.id) control.id = `f${++ids}`;
  const help = hint ? h('small', { id: `${control.id}-hint` }, hint) : null;
  if (help) control.setAttribute('aria-describedby', help.id);
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, help);
}

export function input(attrs = {}) {
  return h('input', { type: 'text', ...attrs });
}

export function select(options, value, attrs = {}) {
  const el = h('select', attrs);
  for (const option of options) {
    const [optionValue, text] = Array.isArray(option) ? option : [option, option];
    el.append(h('option', { value: optionValue, selected: optionValue === value }, text));
  }
  return el;
}

export function button(text, onclick, attrs = {}) {
  return h('button', { type: 'button', onclick, ...attrs }, text);
}

export function card(title, ...body) {
  const heading = h('h2', {}, title);
  return h('section', { class: 'card', 'aria-label': title }, heading, ...body);
}

// columns: [{ label, cell: (row) => node|string, num: true for right-aligned figures }]
export function table(caption, columns, rows, { empty = 'Nothing in this range.', id } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)));
  const body = rows.map((row) => h('tr', {}, columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.cell(row)))));
  return h('div', { class: 'table-wrap' },
    h('table', { id }, h('caption', {}, caption), h('thead', {}, head), h('tbody', {}, body)));
}

// A figure as shown, keeping the API's exact value beside it (tests and copy-paste read it).
export function figure(text, value, attrs = {}) {
  return h('span', { class: 'figure', 'data-value': value ?? '', ...attrs }, text);
}

export function errorMessage(error) {
  const code = error?.code ? ` (${error.code})` : '';
  return h('p', { class: 'error', role: 'alert' }, `${error?.message ?? error}${code}`);
}

export function loading(el) {
  return clear(el).append(h('p', { class: 'muted' }, 'Loading…'));
}

// A form whose submit runs `action` and reports its outcome in a live region beside it.
export function form(label, fields, submitText, action) {
  const outcome = h('p', { class: 'outcome', role: 'status', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, submitText);
  const el = h('form', { class: 'form', 'aria-label': label }, fields, h('div', { class: 'actions' }, submit), outcome);
  el.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    outcome.className = 'outcome';
    outcome.textContent = 'Saving…';
    try {
      outcome.textContent = (await action()) ?? 'Saved.';
    } catch (error) {
      outcome.className = 'outcome error';
      outcome.textContent = `${error.message}${error.code ? ` (${error.code})` : ''}`;
    } finally {
      submit.disabled = false;
    }
  });
  return el;
}
