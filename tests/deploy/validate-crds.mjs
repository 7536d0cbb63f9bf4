// Validates custom resources (kinds Kubernetes' own schemas don't cover) in multi-document
// YAML files against their CRDs' OpenAPI schemas, as shipped by the kubernetes-models packages.
// Usage: node validate-crds.mjs FILE...   Exit 1 on an invalid object or a kind it doesn't know;
// built-in kinds (apiVersion v1, apps/v1, ...) are left to kubernetes-validate.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const MODELS = {
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
};

let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    const obj = doc.toJS();
    if (!obj || !obj.apiVersion) continue;
    const where = `${file}: ${obj.kind}/${obj.metadata?.name}`;
    const base = MODELS[obj.apiVersion];
    if (!base) {
      const group = obj.apiVersion.includes("/") ? obj.apiVersion.split("/")[0] : "";
      if (!group.includes(".") || group.endsWith(".k8s.io")) continue; // built-in API group
      console.log(`FAIL ${where}: no schema known for ${obj.apiVersion}`);
      failed++;
      continue;
    }
    let Model;
    try {
      Model = (await import(`${base}/${obj.kind}`))[obj.kind];
    } catch {
      console.log(`FAIL ${where}: ${obj.apiVersion} has no kind ${obj.kind}`);
      failed++;
      continue;
    }
    try {
      new Model(obj).validate();
      console.log(`ok   ${where}`);
    } catch (err) {
      console.log(`FAIL ${where}: ${err.message}`);
      failed++;
    }
  }
}
process.exit(failed ? 1 : 0);
