// Reading the scenarios' parameters from the environment (`k6 run -e NAME=value` or exported
// variables): typed getters with defaults, so every script documents its knobs in one place.

/** A string parameter, `fallback` when unset or empty. */
export function str(name, fallback) {
  const value = __ENV[name];
  return value === undefined || value === '' ? fallback : value;
}

/** An integer parameter; a malformed value stops the test in the init phase. */
export function int(name, fallback) {
  const raw = str(name, undefined);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || Math.floor(value) !== value) {
    throw new Error(`${name} must be an integer, got '${raw}'`);
  }
  return value;
}

/** A number parameter (fractions allowed). */
export function num(name, fallback) {
  const raw = str(name, undefined);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new Error(`${name} must be a number, got '${raw}'`);
  return value;
}

/** A boolean parameter: 1/true/yes/on are true, 0/false/no/off false. */
export function bool(name, fallback) {
  const raw = str(name, undefined);
  if (raw === undefined) return fallback;
  const lower = raw.toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(lower)) return true;
  if (['0', 'false', 'no', 'off'].includes(lower)) return false;
  throw new Error(`${name} must be a boolean, got '${raw}'`);
}

/** A duration parameter in k6 notation (`500ms`, `10s`, `2m`, `1h`, or plain seconds), in milliseconds. */
export function durationMs(name, fallback) {
  return parseDurationMs(str(name, fallback), name);
}

/** `10s` → 10000. */
export function parseDurationMs(text, what = 'duration') {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(String(text).trim());
  if (!match) throw new Error(`${what} must look like 500ms, 10s, 2m or 1h, got '${text}'`);
  const scale = { ms: 1, s: 1000, m: 60000, h: 3600000 }[match[2] || 's'];
  return Math.round(Number(match[1]) * scale);
}

/** Milliseconds as a k6 duration string. */
export function ms(value) {
  return `${Math.max(0, Math.ceil(value))}ms`;
}

/**
 * The gateways' base URLs: HUBCAST_URL, or several separated by commas (the nodes of a cluster, each
 * reached directly); connections are spread over them round-robin.
 */
export function baseUrls() {
  const urls = str('HUBCAST_URL', 'http://127.0.0.1:8080')
    .split(',')
    .map((url) => url.trim().replace(/\/+$/, ''))
    .filter((url) => url.length > 0);
  if (urls.length === 0) throw new Error('HUBCAST_URL is empty');
  return urls;
}

/** The first gateway's base URL (no trailing slash). */
export function baseUrl() {
  return baseUrls()[0];
}

/** The hub's URL on the `index`th connection's gateway (round-robin): base URL + HUB_PATH (default /bench). */
export function hubUrl(index = 0, defaultPath = '/bench') {
  const path = str('HUB_PATH', defaultPath);
  const urls = baseUrls();
  return urls[index % urls.length] + (path.startsWith('/') ? path : `/${path}`);
}
