// Validates custom resources against the Gateway API and Prometheus Operator schemas of the npm
// @kubernetes-models packages, strictly: besides the schemas' own checks (types, enums, required fields,
// formats), a field the schema does not know is an error, as with `kubectl --validate=strict`.
// The compiled validators read every property they know by name, so a Proxy records what they read;
// what was never read is unknown. Objects the validator iterates over (label maps, free-form objects)
// accept any key.
//
// Input (stdin): a JSON array of objects. Output (stdout): a JSON array of
// {kind, name, errors: [string]}, one per object, in order. Exit status 0 even with errors (the caller
// asserts); 2 for an object of a kind without a model.
// Used by tests/python (test_helm.py, test_k8s.py); needs `npm ci` in tests/node.
import { HTTPRoute } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1';
import { ServiceMonitor, PodMonitor, PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';

const MODELS = {
  'gateway.networking.k8s.io/v1/HTTPRoute': HTTPRoute,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

/** A proxy of `value` that records, per object, the keys read and whether it was iterated. */
function tracked(value, seen) {
  if (value === null || typeof value !== 'object') return value;
  const record = { keys: new Set(), iterated: false };
  seen.set(value, record);
  return new Proxy(value, {
    get(target, key, receiver) {
      if (typeof key === 'string') record.keys.add(key);
      return tracked(Reflect.get(target, key, receiver), seen);
    },
    has(target, key) {
      if (typeof key === 'string') record.keys.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      record.iterated = true;
      return Reflect.ownKeys(target);
    },
  });
}

function unknownFields(value, seen, path, out) {
  if (value === null || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    value.forEach((item, i) => unknownFields(item, seen, `${path}/${i}`, out));
    return;
  }
  const record = seen.get(value);
  for (const [key, child] of Object.entries(value)) {
    if (record && !record.iterated && !record.keys.has(key)) out.push(`${path}/${key}: unknown field`);
    else unknownFields(child, seen, `${path}/${key}`, out);
  }
}

function check(object) {
  const model = MODELS[`${object.apiVersion}/${object.kind}`];
  if (!model) {
    process.stderr.write(`no model for ${object.apiVersion} ${object.kind}\n`);
    process.exit(2);
  }
  const seen = new Map();
  const errors = [];
  try {
    // The model's validate() runs its compiled schema on `this`: here, the tracking proxy.
    model.prototype.validate.call(tracked(object, seen));
  } catch (error) {
    if (!error.errors) throw error;
    for (const e of error.errors) errors.push(`${e.instancePath || '/'}: ${e.message || e.keyword} ${JSON.stringify(e.params)}`);
  }
  unknownFields(object, seen, '', errors);
  return { kind: object.kind, name: object.metadata?.name, errors };
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  process.stdout.write(JSON.stringify(JSON.parse(input).map(check)));
});
