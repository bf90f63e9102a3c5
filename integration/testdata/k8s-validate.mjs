// Validates Kubernetes objects against the Kubernetes API schemas of the npm package
// kubernetes-models (types, enums, required fields, formats), and prints them as a JSON array.
// Input: YAML documents on stdin (e.g. `kubectl kustomize deploy/kubernetes`).
// Exit 1, with one line per problem on stderr, when an object is invalid or of an unknown kind.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

const objects = [];
let failed = false;
for (const doc of parseAllDocuments(readFileSync(0, 'utf8'))) {
  if (doc.errors.length > 0) {
    for (const e of doc.errors) console.error(`YAML: ${e.message}`);
    failed = true;
    continue;
  }
  const obj = doc.toJS();
  if (obj == null) continue;
  const where = `${obj.kind ?? '?'}/${obj.metadata?.name ?? '?'}`;
  if (typeof obj.apiVersion !== 'string' || typeof obj.kind !== 'string') {
    console.error(`${where}: apiVersion and kind are required`);
    failed = true;
    continue;
  }
  // apps/v1 + Deployment -> kubernetes-models/apps/v1/Deployment; v1 + ConfigMap -> kubernetes-models/v1/ConfigMap
  let Model;
  try {
    Model = (await import(`kubernetes-models/${obj.apiVersion}/${obj.kind}`))[obj.kind];
  } catch {
    console.error(`${where}: unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}`);
    failed = true;
    continue;
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    for (const err of e.errors ?? [{ instancePath: '', message: e.message }]) {
      console.error(`${where}: ${err.instancePath || '/'} ${err.message}`);
    }
    failed = true;
    continue;
  }
  objects.push(obj);
}
console.log(JSON.stringify(objects));
process.exit(failed ? 1 : 0);
