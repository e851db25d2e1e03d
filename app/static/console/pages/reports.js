// Reports and exports: CSV, XLSX and PDF downloads through signed links (createExportLink, GET
// /exports/…), and the saved report templates with their monthly files.

import { gql, unwrap } from '../api.js';
import { rangeControls } from '../controls.js';
import { button, card, clear, errorMessage, field, form, h, input, select, table } from '../dom.js';
import { dateTime } from '../format.js';

const REPORTS = [['USAGE', 'Usage'], ['LEDGER', 'Ledger'], ['PNL', 'P&L']];
const FORMATS = [['CSV', 'CSV'], ['XLSX', 'Excel (XLSX)'], ['PDF', 'PDF']];
const KINDS = [['SUMMARY', 'Summary'], ['USAGE', 'Usage'], ['LEDGER', 'Ledger'], ['PNL', 'P&L']];

function download(link) {
  return h('p', { class: 'download' }, h('a', { href: link.url, download: link.filename, class: 'download-link' }, `Download ${link.filename}`),
    h('span', { class: 'muted' }, ` (link valid until ${dateTime(link.expiresAt)})`));
}

function exportCard(session) {
  const report = select(REPORTS, 'USAGE', { name: 'report' });
  const format = select(FORMATS, 'CSV', { name: 'format' });
  const range = rangeControls(session);
  const result = h('div', { id: 'export-link' });
  return card('Export', form('Export a report', [field('Report', report), field('Format', format), ...range.fields], 'Make download link', async () => {
    const data = await gql(`mutation($input: ExportInput!) { createExportLink(input: $input) {
      __typename ... on ExportLink { url expiresAt filename } ... on UserError { code message field } } }`, {
      input: { report: report.value, format: format.value, range: range.range(), currency: range.currency() },
    });
    clear(result).append(download(unwrap(data.createExportLink)));
    return 'Link ready.';
  }), result);
}

function templatesCard(session, templates, refresh) {
  const out = h('div');
  const rows = table('Saved report templates', [
    { label: 'Name', cell: (t) => t.name },
    { label: 'Report', cell: (t) => `${t.kind.toLowerCase()} · ${t.format}` },
    { label: 'Filters', cell: (t) => t.filters.map((f) => `${f.name}=${f.value}`).join(', ') || '—' },
    { label: 'Updated', cell: (t) => dateTime(t.updatedAt) },
    { label: 'Actions', cell: (t) => h('span', { class: 'row-actions' },
      button('Last month’s file', async () => {
        try {
          const data = await gql(`mutation($id: ID!) { runReportTemplate(id: $id) { __typename
            ... on ReportDownload { url expiresAt filename month } ... on UserError { code message field } } }`, { id: t.id });
          clear(out).append(download(unwrap(data.runReportTemplate)));
        } catch (error) { clear(out).append(errorMessage(error)); }
      }, { class: 'secondary' }),
      session.access.manage ? button('Delete', async () => {
        await gql('mutation($id: ID!) { deleteReportTemplate(id: $id) { __typename } }', { id: t.id });
        await refresh();
      }, { class: 'secondary danger', 'aria-label': `Delete template ${t.name}` }) : null) },
  ], templates, { empty: 'No saved template.', id: 'templates-table' });
  return card('Saved templates', rows, out, session.access.manage ? saveForm(refresh) : null);
}

function saveForm(refresh) {
  const name = input({ name: 'name', required: true, placeholder: 'Monthly usage by model' });
  const kind = select(KINDS, 'SUMMARY', { name: 'kind' });
  const format = select(FORMATS, 'PDF', { name: 'format' });
  return form('Save a report template', [field('Name', name), field('Report', kind), field('Format', format)], 'Save template', async () => {
    const data = await gql(`mutation($input: ReportTemplateInput!) { saveReportTemplate(input: $input) { __typename
      ... on ReportTemplateSaved { template { id name } } ... on UserError { code message field } } }`,
    { input: { name: name.value.trim(), kind: kind.value, format: format.value } });
    unwrap(data.saveReportTemplate);
    await refresh();
    return 'Template saved.';
  });
}

export async function render(el, session) {
  const slot = h('div');
  const refresh = async () => {
    try {
      const { reportTemplates } = await gql('{ reportTemplates { id name kind format filters { name value } updatedAt } }');
      clear(slot).append(templatesCard(session, reportTemplates, refresh));
    } catch (error) {
      clear(slot).append(errorMessage(error));
    }
  };
  el.append(exportCard(session), slot);
  await refresh();
}
