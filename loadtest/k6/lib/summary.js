// The end-of-test summary of every scenario: a compact text table on stdout (k6 prints none of its
// own once a script defines handleSummary) and the full k6 summary data as JSON in a file, with the
// scenario's name, parameters and derived numbers added under `hubcast`.
//
// The JSON goes to $SUMMARY_JSON, or `<scenario>-summary.json` in the working directory; SUMMARY_JSON=-
// writes no file.

import { str } from './env.js';

/** Trend statistics shown and exported; `count` lets checks see how many samples a trend has. */
export const TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'];

function formatValue(value, isTime) {
  if (typeof value !== 'number') return String(value);
  if (isTime) {
    return value >= 1000 ? `${(value / 1000).toFixed(2)}s` : `${value.toFixed(2)}ms`;
  }
  return Number.isInteger(value) ? String(value) : value.toFixed(4);
}

function describe(metric) {
  const values = metric.values || {};
  const isTime = metric.contains === 'time';
  switch (metric.type) {
    case 'trend':
      return TREND_STATS.filter((stat) => stat in values)
        .map((stat) => `${stat}=${stat === 'count' ? values[stat] : formatValue(values[stat], isTime)}`)
        .join(' ');
    case 'counter':
      return `count=${values.count} rate=${formatValue(values.rate, false)}/s`;
    case 'rate':
      return `rate=${(100 * values.rate).toFixed(2)}% (${values.passes} of ${values.passes + values.fails})`;
    case 'gauge':
      return `value=${formatValue(values.value, isTime)} min=${formatValue(values.min, isTime)} max=${formatValue(values.max, isTime)}`;
    default:
      return JSON.stringify(values);
  }
}

/** The text summary: thresholds first (the verdict), then every metric. */
export function textSummary(name, data, extra) {
  const lines = [`hubcast k6 scenario '${name}'`];
  const metrics = data.metrics || {};
  const names = Object.keys(metrics).sort();
  const thresholdLines = [];
  for (const metricName of names) {
    const thresholds = metrics[metricName].thresholds || {};
    for (const expression of Object.keys(thresholds)) {
      const ok = thresholds[expression].ok;
      thresholdLines.push(`  ${ok ? 'ok  ' : 'FAIL'} ${metricName}: ${expression}`);
    }
  }
  if (thresholdLines.length) lines.push('thresholds:', ...thresholdLines);
  lines.push('metrics:');
  const width = Math.max(...names.map((n) => n.length), 10);
  for (const metricName of names) {
    lines.push(`  ${metricName.padEnd(width)}  ${describe(metrics[metricName])}`);
  }
  if (extra && Object.keys(extra).length) {
    lines.push('derived:');
    for (const key of Object.keys(extra)) lines.push(`  ${key} = ${JSON.stringify(extra[key])}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The object a scenario's handleSummary returns: text on stdout, JSON in a file. */
export function summaryOutputs(name, data, params, derived = {}) {
  const path = str('SUMMARY_JSON', `${name}-summary.json`);
  const outputs = { stdout: textSummary(name, data, derived) };
  if (path !== '-') {
    outputs[path] = JSON.stringify({ ...data, hubcast: { scenario: name, params, derived } }, null, 2);
    outputs.stdout += `summary JSON: ${path}\n`;
  }
  return outputs;
}

/** A metric's value from the summary data, or `fallback` when it never got a sample. */
export function metricValue(data, metric, stat, fallback = 0) {
  const entry = data.metrics && data.metrics[metric];
  if (!entry || !entry.values || !(stat in entry.values)) return fallback;
  return entry.values[stat];
}
