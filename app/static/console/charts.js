// Charts drawn as SVG by hand: a line chart, horizontal bars, a budget gauge with its stages
// and a forecast band. Figures become numbers only to place shapes; labels use the exact text.

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) if (value != null) el.setAttribute(key, String(value));
  for (const child of children.flat()) if (child != null) el.append(child);
  return el;
}

function frame(title, width, height, description) {
  return s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', class: 'chart', 'aria-label': title },
    s('title', {}, title), description ? s('desc', {}, description) : null);
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((step) => step * power).find((step) => step >= value);
}

// series: [{ name, key (css class), values: [number] }]; labels: one per point.
export function lineChart({ title, labels, series, format = String }) {
  const width = 720, height = 260, left = 70, right = 16, top = 16, bottom = 44;
  const all = series.flatMap((line) => line.values);
  const step = niceMax((Math.max(0, ...all) - Math.min(0, ...all)) / 4);
  const high = Math.max(step, Math.ceil(Math.max(0, ...all) / step) * step);
  const low = Math.floor(Math.min(0, ...all) / step) * step;
  const x = (i) => left + (labels.length < 2 ? 0 : (i * (width - left - right)) / (labels.length - 1));
  const y = (v) => top + ((high - v) * (height - top - bottom)) / (high - low);
  const svg = frame(title, width, height, series.map((line) => line.name).join(', '));
  for (let value = low; value <= high + step / 2; value += step) {
    svg.append(s('line', { x1: left, x2: width - right, y1: y(value), y2: y(value), class: Math.abs(value) < step / 2 ? 'axis' : 'grid' }),
      s('text', { x: left - 6, y: y(value) + 4, class: 'tick', 'text-anchor': 'end' }, format(value)));
  }
  const every = Math.max(1, Math.ceil(labels.length / 8));
  labels.forEach((label, i) => {
    if (i % every === 0) svg.append(s('text', { x: x(i), y: height - bottom + 18, class: 'tick', 'text-anchor': 'middle' }, label));
  });
  [...series].reverse().forEach((line) => { // the first series drawn last, on top
    const points = line.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    svg.append(s('polyline', { points, class: `line ${line.key}`, fill: 'none' }));
  });
  series.forEach((line, i) => {
    const lx = left + i * 150;
    svg.append(s('rect', { x: lx, y: height - 16, width: 12, height: 4, class: `swatch ${line.key}` }),
      s('text', { x: lx + 18, y: height - 11, class: 'legend' }, line.name));
  });
  return svg;
}

// items: [{ label, value: number, text }]
export function barChart({ title, items }) {
  const row = 26, width = 720, labelWidth = 200, textWidth = 110;
  const height = Math.max(row, items.length * row) + 8;
  const high = niceMax(Math.max(0, ...items.map((item) => item.value)));
  const svg = frame(title, width, height);
  items.forEach((item, i) => {
    const length = (Math.max(0, item.value) / high) * (width - labelWidth - textWidth);
    const top = 4 + i * row;
    svg.append(
      s('text', { x: labelWidth - 8, y: top + 16, class: 'label', 'text-anchor': 'end' }, item.label),
      s('rect', { x: labelWidth, y: top + 4, width: Math.max(1, length), height: row - 10, class: 'bar' }),
      s('text', { x: labelWidth + length + 6, y: top + 16, class: 'label' }, item.text),
    );
  });
  return svg;
}

// A budget's use against its limit, with a tick per alert stage (filled when reached).
export function gauge({ title, percentUsed, thresholds, reached }) {
  const width = 360, height = 56, left = 4, barWidth = 326;
  const used = Math.max(0, Number(percentUsed));
  const scale = Math.max(100, ...thresholds); // beyond it the bar is full and red
  const x = (p) => left + (p / scale) * barWidth;
  const level = used >= 100 ? 'over' : reached.length ? 'warn' : 'ok';
  const svg = frame(title, width, height, `${used.toFixed(1)} % used; stages ${thresholds.join(', ')} %`);
  svg.append(
    s('rect', { x: left, y: 6, width: barWidth, height: 16, rx: 3, class: 'gauge-track' }),
    s('rect', { x: left, y: 6, width: Math.max(0, x(Math.min(used, scale)) - left), height: 16, rx: 3, class: `gauge-fill ${level}` }),
  );
  [...thresholds].sort((a, b) => a - b).forEach((stage, i) => {
    const hit = reached.includes(stage);
    svg.append(
      s('line', { x1: x(stage), x2: x(stage), y1: 2, y2: 26 + (i % 2) * 12, class: hit ? 'stage reached' : 'stage' }),
      s('text', { x: x(stage), y: 38 + (i % 2) * 12, class: hit ? 'tick reached' : 'tick', 'text-anchor': 'middle' }, `${stage}%`),
    );
  });
  return svg;
}

// The month so far and projected: cumulative spend per day, the 80 % and 95 % bands, the limit.
export function forecastBand({ title, days, limit, format = String }) {
  const width = 720, height = 240, left = 70, right = 16, top = 12, bottom = 30;
  const n = days.length;
  const values = days.flatMap((d) => [d.cumulative, d.cumulativeInterval95?.high].filter((v) => v != null).map(Number));
  const spend = Math.max(0, ...values);
  const limitShown = limit != null && Number(limit) <= Math.max(spend, 0.01) * 2;
  const high = niceMax(Math.max(spend, limitShown ? Number(limit) : 0));
  const x = (i) => left + (n < 2 ? 0 : (i * (width - left - right)) / (n - 1));
  const y = (v) => top + ((high - Number(v)) * (height - top - bottom)) / high;
  const svg = frame(title, width, height, 'observed and projected cumulative spend with 80 % and 95 % intervals');
  for (let tick = 0; tick <= 4; tick += 1) {
    const value = (high * tick) / 4;
    svg.append(s('line', { x1: left, x2: width - right, y1: y(value), y2: y(value), class: tick ? 'grid' : 'axis' }),
      s('text', { x: left - 6, y: y(value) + 4, class: 'tick', 'text-anchor': 'end' }, format(value)));
  }
  const band = (key, cls) => {
    const pts = days.map((d, i) => [i, d[key]]).filter(([, interval]) => interval);
    if (!pts.length) return;
    const upper = pts.map(([i, iv]) => `${x(i)},${y(iv.high)}`);
    const lower = pts.reverse().map(([i, iv]) => `${x(i)},${y(iv.low)}`);
    svg.append(s('polygon', { points: [...upper, ...lower].join(' '), class: cls }));
  };
  band('cumulativeInterval95', 'band95');
  band('cumulativeInterval80', 'band80');
  const line = (filter, cls) => {
    const pts = days.map((d, i) => [i, d]).filter(([, d]) => filter(d)).map(([i, d]) => `${x(i)},${y(d.cumulative)}`);
    if (pts.length) svg.append(s('polyline', { points: pts.join(' '), class: cls, fill: 'none' }));
  };
  const lastObserved = days.findLastIndex((d) => d.observed);
  line((d) => d.observed, 'line observed');
  line((d) => !d.observed || days.indexOf(d) === lastObserved, 'line projected');
  if (limit != null && !limitShown) {
    svg.append(s('text', { x: width - right, y: top + 10, class: 'tick', 'text-anchor': 'end' }, `limit ${format(Number(limit))}, above the chart`));
  } else if (limit != null) {
    svg.append(s('line', { x1: left, x2: width - right, y1: y(limit), y2: y(limit), class: 'limit' }),
      s('text', { x: width - right, y: y(limit) - 4, class: 'tick', 'text-anchor': 'end' }, `limit ${format(Number(limit))}`));
  }
  days.forEach((d, i) => {
    if (i % Math.max(1, Math.ceil(n / 8)) === 0) {
      svg.append(s('text', { x: x(i), y: height - 10, class: 'tick', 'text-anchor': 'middle' }, d.date.slice(5)));
    }
  });
  return svg;
}
