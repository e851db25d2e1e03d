// What the signed-in token may do, from `me { roles scopes }` (auth/permissions.py is the truth:
// this only hides controls the server would refuse anyway).

const WRITE_ROLES = ['platform_admin', 'org_admin'];
const READ_ROLES = [...WRITE_ROLES, 'finance_viewer'];

export function accessOf(me, claims) {
  const roles = me.roles ?? [];
  const scopes = me.scopes ?? [];
  const manage = roles.some((r) => WRITE_ROLES.includes(r)) || scopes.includes('billing:write');
  const readUsage = roles.some((r) => READ_ROLES.includes(r)) || scopes.some((s) => ['usage:read', 'billing:read'].includes(s));
  const readLedger = roles.some((r) => READ_ROLES.includes(r)) || scopes.includes('billing:read');
  const accounts = [claims.accounts ?? []].flat().map(String);
  return {
    manage, // budgets, channels, alerts, templates, top-ups
    readUsage,
    readLedger,
    platform: roles.includes('platform_admin'),
    member: !readUsage && roles.includes('member'),
    accounts, // a member's own accounts (its token's `accounts` claim)
  };
}
