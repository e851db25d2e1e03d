// Presentation of money, counts, percentages and dates. Money follows the exports' rule: the
// exact decimal string from the API rounded to the currency's ISO 4217 minor unit, half-to-even
// (kernel/money.py round_for_presentation). Intl formats the decimal string itself, never a float.

// ISO 4217 minor units other than 2 (tests/test_console_static.py checks this against the table
// the server uses, the iso4217 package).
export const MINOR_UNITS = {
  BHD: 3, BIF: 0, CLF: 4, CLP: 0, DJF: 0, GNF: 0, IQD: 3, ISK: 0, JOD: 3, JPY: 0, KMF: 0, KRW: 0,
  KWD: 3, LYD: 3, OMR: 3, PYG: 0, RWF: 0, TND: 3, UGX: 0, UYI: 0, UYW: 4, VND: 0, VUV: 0, XAF: 0,
  XAG: 0, XAU: 0, XBA: 0, XBB: 0, XBC: 0, XBD: 0, XDR: 0, XOF: 0, XPD: 0, XPF: 0, XPT: 0, XSU: 0,
  XTS: 0, XUA: 0, XXX: 0,
};

export function minorUnit(currency) {
  return MINOR_UNITS[currency] ?? 2;
}

const formatters = new Map();

function moneyFormat(currency) {
  if (!formatters.has(currency)) {
    const digits = minorUnit(currency);
    formatters.set(currency, new Intl.NumberFormat(undefined, {
      style: 'currency',
      currency,
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
      roundingMode: 'halfEven',
    }));
  }
  return formatters.get(currency);
}

export function money(amount, currency) {
  if (amount == null) return '—';
  return moneyFormat(currency).format(String(amount));
}

const counts = new Intl.NumberFormat();

export function count(value) {
  return value == null ? '—' : counts.format(value);
}

export function percent(value, digits = 1) {
  if (value == null) return '—';
  return `${new Intl.NumberFormat(undefined, {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
    roundingMode: 'halfEven',
  }).format(String(value))} %`;
}

export function dateTime(value) {
  if (!value) return '—';
  return new Date(value).toLocaleString(undefined, {
    dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC',
  }) + ' UTC';
}

export function day(value) {
  if (!value) return '—';
  return new Date(value).toLocaleDateString(undefined, {
    month: 'short', day: 'numeric', timeZone: 'UTC',
  });
}

// Half-open UTC ranges [start, end) for the range pickers: 'YYYY-MM-DD' inputs, end inclusive.
export function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

export function rangeOf(fromDay, toDay) {
  const end = new Date(`${toDay}T00:00:00Z`);
  end.setUTCDate(end.getUTCDate() + 1);
  return { start: `${fromDay}T00:00:00Z`, end: end.toISOString() };
}

// The server's clock, not the browser's: "today" and "this month" are the server's (its
// `now`), so a browser whose clock is off still asks for the period the server means.
let serverOffsetMs = 0;

export function setServerNow(iso) {
  serverOffsetMs = new Date(iso).getTime() - Date.now();
}

export function serverToday() {
  return new Date(Date.now() + serverOffsetMs);
}

export function lastDays(days) {
  const today = serverToday();
  const from = new Date(today);
  from.setUTCDate(from.getUTCDate() - (days - 1));
  return { from: isoDay(from), to: isoDay(today) };
}

// The range just before [start, end), of the same length: for comparisons.
export function previousRange(range) {
  const start = new Date(range.start);
  const length = new Date(range.end) - start;
  return { start: new Date(start - length).toISOString(), end: start.toISOString() };
}
