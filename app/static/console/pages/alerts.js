// Alerts with acknowledgement, and the notification channels they are delivered to.

import { gql } from '../api.js';
import { button, card, clear, errorMessage, field, form, h, input, select, table } from '../dom.js';
import { dateTime, money } from '../format.js';

const ALERT_FIELDS = 'id kind code stage message raisedAt state acknowledgedAt acknowledgedBy spent limit currency';
const CHANNEL_FIELDS = 'id kind target enabled createdAt scope { kind id name }';

async function acknowledge(id) {
  const data = await gql(`mutation($id: ID!) { acknowledgeAlert(id: $id) { ${ALERT_FIELDS} } }`, { id });
  return data.acknowledgeAlert;
}

function alertsTable(alerts, session, refresh) {
  return table('Alerts, newest first', [
    { label: 'Raised', cell: (a) => dateTime(a.raisedAt) },
    { label: 'Kind', cell: (a) => `${a.kind.toLowerCase().replace(/_/g, ' ')}${a.stage != null ? ` ${a.stage} %` : ''}` },
    { label: 'Message', cell: (a) => a.message },
    { label: 'Spent / limit', num: true, cell: (a) => (a.limit != null ? `${money(a.spent, a.currency)} / ${money(a.limit, a.currency)}` : '—') },
    { label: 'State', cell: (a) => h('span', { class: `state ${a.state.toLowerCase()}`, 'data-alert-state': a.state },
      a.state === 'OPEN' ? 'open' : `acknowledged by ${a.acknowledgedBy} ${dateTime(a.acknowledgedAt)}`) },
    { label: 'Action', cell: (a) => (a.state === 'OPEN' && session.access.manage
      ? button('Acknowledge', async (event) => {
        event.target.disabled = true;
        try { await acknowledge(a.id); await refresh(); } catch (error) { event.target.after(errorMessage(error)); event.target.disabled = false; }
      }, { 'data-alert': a.id, 'aria-label': `Acknowledge: ${a.message}` })
      : '') },
  ], alerts, { empty: 'No alert.', id: 'alerts-table' });
}

function channelsTable(channels, session, refresh) {
  return table('Notification channels', [
    { label: 'Kind', cell: (c) => c.kind.toLowerCase() },
    { label: 'Target', cell: (c) => c.target },
    { label: 'Scope', cell: (c) => (c.scope ? `${c.scope.kind.toLowerCase()} ${c.scope.name ?? ''}` : 'organisation') },
    { label: 'State', cell: (c) => (c.enabled ? 'enabled' : 'paused') },
    { label: 'Action', cell: (c) => (session.access.manage ? button(c.enabled ? 'Pause' : 'Resume', async () => {
      await gql('mutation($id: ID!, $enabled: Boolean!) { setNotificationChannelEnabled(id: $id, enabled: $enabled) { id } }', { id: c.id, enabled: !c.enabled });
      await refresh();
    }, { class: 'secondary' }) : '') },
  ], channels, { empty: 'No channel: alerts are only listed here.', id: 'channels-table' });
}

function channelForm(refresh) {
  const kind = select([['WEBHOOK', 'Webhook'], ['EMAIL', 'Email'], ['SLACK', 'Slack'], ['TEAMS', 'Teams'], ['PAGERDUTY', 'PagerDuty'], ['SMS', 'SMS']], 'EMAIL', { name: 'kind' });
  const target = input({ name: 'target', required: true, placeholder: 'finance@example.com or https://…' });
  return form('Add a notification channel', [field('Kind', kind), field('Target', target, 'URL, address or number')], 'Add channel', async () => {
    const data = await gql(`mutation($input: NotificationChannelInput!) { createNotificationChannel(input: $input) { id kind signingSecret } }`,
      { input: { kind: kind.value, target: target.value.trim() } });
    await refresh();
    const secret = data.createNotificationChannel.signingSecret;
    return secret ? `Added. Signing secret (shown once): ${secret}` : 'Added.';
  });
}

export async function render(el, session) {
  const state = select([['', 'All'], ['OPEN', 'Open'], ['ACKNOWLEDGED', 'Acknowledged']], '', { name: 'state' });
  const alertsOut = h('div');
  const channelsOut = h('div');
  const refresh = async () => {
    try {
      // Channels hold delivery targets: only those who manage the organisation read them.
      const channels = session.access.manage ? `notificationChannels { ${CHANNEL_FIELDS} }` : '';
      const data = await gql(`query($filter: AlertFilter) { alerts(filter: $filter, first: 50) { nodes { ${ALERT_FIELDS} } }
        ${channels} }`, { filter: state.value ? { state: state.value } : null });
      clear(alertsOut).append(alertsTable(data.alerts.nodes, session, refresh));
      clear(channelsOut).append(session.access.manage
        ? channelsTable(data.notificationChannels, session, refresh)
        : h('p', { class: 'muted' }, 'Notification channels are managed by organisation admins.'));
    } catch (error) {
      clear(alertsOut).append(errorMessage(error));
    }
  };
  state.addEventListener('change', refresh);
  el.append(card('Alerts', h('div', { class: 'controls' }, field('Show', state)), alertsOut),
    card('Notification channels', channelsOut, session.access.manage ? channelForm(refresh) : null));
  await refresh();
}
