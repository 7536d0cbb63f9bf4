// Validates custom resources (kinds Kubernetes' own schemas don't cover) in multi-document YAML
// files against their real schemas, closed to unknown fields as the API server's strict field
// validation (kubectl's default) is:
//   - kinds in MODELS: the kubernetes-models package's validator (types, patterns, enums, ...),
//     plus an unknown-field check against the same package's type declarations (the validators
//     themselves let unknown fields through);
//   - kinds with a CRD in --crds DIR (vendored upstream CRDs, see their headers): the CRD's
//     openAPIV3Schema through ajv, every object closed unless the schema says otherwise.
// CEL rules (x-kubernetes-validations) are not evaluated by either; the tests check the ones the
// chart relies on.
// Usage: node validate-crds.mjs [--crds DIR] FILE...   Exit 1 on an invalid object or a kind it
// has no schema for; built-in kinds (BUILTIN_GROUPS) are left to kubernetes-validate.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv from "ajv";
import { parseAllDocuments } from "yaml";

const MODELS = {
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
  "gateway.networking.k8s.io/v1": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1",
};

// Kubernetes' own API groups ("" is the core group). Any other group, including other
// *.k8s.io groups such as gateway.networking.k8s.io, is a custom resource and needs a schema.
const BUILTIN_GROUPS = new Set([
  "",
  "admissionregistration.k8s.io",
  "apiextensions.k8s.io",
  "apiregistration.k8s.io",
  "apps",
  "authentication.k8s.io",
  "authorization.k8s.io",
  "autoscaling",
  "batch",
  "certificates.k8s.io",
  "coordination.k8s.io",
  "discovery.k8s.io",
  "events.k8s.io",
  "flowcontrol.apiserver.k8s.io",
  "internal.apiserver.k8s.io",
  "networking.k8s.io",
  "node.k8s.io",
  "policy",
  "rbac.authorization.k8s.io",
  "resource.k8s.io",
  "scheduling.k8s.io",
  "storage.k8s.io",
  "storagemigration.k8s.io",
]);

// -- vendored CRDs through ajv ---------------------------------------------------------------

const DNS_SUBDOMAIN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const STRING_MAP = { type: "object", additionalProperties: { type: "string" } };
// What a manifest's metadata may carry (the API server fills in the rest).
const OBJECT_META = {
  type: "object",
  additionalProperties: false,
  required: ["name"],
  properties: {
    name: { type: "string", maxLength: 253, pattern: DNS_SUBDOMAIN },
    generateName: { type: "string" },
    namespace: { type: "string", maxLength: 63, pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" },
    labels: STRING_MAP,
    annotations: STRING_MAP,
    finalizers: { type: "array", items: { type: "string" } },
  },
};

// A structural CRD schema as JSON Schema: an object schema without properties-wide allowances is
// closed (the API server drops or, under strict field validation, rejects unknown fields).
function toJsonSchema(s) {
  if (Array.isArray(s)) return s.map(toJsonSchema);
  if (!s || typeof s !== "object") return s;
  const out = {};
  for (const [key, value] of Object.entries(s)) {
    if (key.startsWith("x-kubernetes-") || key === "nullable") continue; // not JSON Schema
    if (key === "properties") {
      out.properties = Object.fromEntries(
        Object.entries(value).map(([name, sub]) => [name, toJsonSchema(sub)]),
      );
    } else if (["items", "not"].includes(key) || (key === "additionalProperties" && typeof value === "object")) {
      out[key] = toJsonSchema(value);
    } else if (["allOf", "anyOf", "oneOf"].includes(key)) {
      out[key] = value.map(toJsonSchema);
    } else {
      out[key] = value;
    }
  }
  if (s["x-kubernetes-int-or-string"]) delete out.type; // upstream pairs it with anyOf int|string
  const isObject = s.type === "object" || s.properties !== undefined;
  if (isObject && !s["x-kubernetes-preserve-unknown-fields"] && s.additionalProperties === undefined) {
    out.additionalProperties = false;
  }
  return s.nullable ? { anyOf: [out, { type: "null" }] } : out;
}

const ajv = new Ajv({
  allErrors: true,
  strictTypes: false, // CRDs put enums/patterns in allOf branches without a type
  formats: {
    int32: { type: "number", validate: (n) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 },
    int64: { type: "number", validate: (n) => Number.isInteger(n) },
    byte: /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/,
    "date-time": /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i,
  },
});

function loadCrds(dir) {
  const validators = {};
  for (const name of readdirSync(dir).filter((n) => n.endsWith(".yaml")).sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, name), "utf8"))) {
      const crd = doc.toJS();
      if (crd?.kind !== "CustomResourceDefinition") continue;
      for (const version of crd.spec.versions) {
        const schema = toJsonSchema(version.schema.openAPIV3Schema);
        schema.properties.metadata = OBJECT_META;
        schema.required = [...new Set([...(schema.required ?? []), "apiVersion", "kind", "metadata"])];
        const key = `${crd.spec.group}/${version.name} ${crd.spec.names.kind}`;
        validators[key] = { validate: ajv.compile(schema), source: name };
      }
    }
  }
  return validators;
}

function ajvProblems(errors) {
  return errors.map((e) => {
    const where = e.instancePath || "/";
    if (e.keyword === "additionalProperties") return `${where}: unknown field "${e.params.additionalProperty}"`;
    return `${where}: ${e.message}`;
  });
}

// -- kubernetes-models: unknown fields, from the package's type declarations ------------------

// The fields of a model class, read from its .d.ts (generated code of one regular form:
// `export declare class X extends Model<IX> ... { "field"?: Type; ... }`), or null for a type
// without one (a string, a number, an int-or-string: nothing to check inside).
const classCache = new Map();
function classFields(dtsFile) {
  if (classCache.has(dtsFile)) return classCache.get(dtsFile);
  const text = readFileSync(dtsFile, "utf8").replace(/\/\*\*[\s\S]*?\*\//g, "");
  const imports = new Map();
  for (const m of text.matchAll(/import \{([^}]+)\} from "([^"]+)";/g)) {
    for (const name of m[1].split(",").map((n) => n.trim()).filter(Boolean)) imports.set(name, m[2]);
  }
  const body = /export declare class \w+ extends Model<[^>]+>[^{]*\{\n([\s\S]*?)\n\}/.exec(text);
  let fields = null;
  if (body) {
    fields = new Map();
    const starts = [...body[1].matchAll(/^ {4}"([^"]+)"\??: /gm)];
    starts.forEach((m, i) => {
      const end = i + 1 < starts.length ? starts[i + 1].index : body[1].search(/^ {4}(static|constructor)\b/m);
      const type = body[1].slice(m.index + m[0].length, end).trim().replace(/;$/, "");
      fields.set(m[1], typeShape(type, imports, dirname(dtsFile)));
    });
  }
  classCache.set(dtsFile, fields);
  return fields;
}

function typeShape(type, imports, dir) {
  const array = /^Array<(.+)>$/s.exec(type);
  if (array) return { array: typeShape(array[1].trim(), imports, dir) };
  const map = /^\{\s*\[key: string\]: ([\s\S]+?);\s*\}$/.exec(type);
  if (map) return { map: typeShape(map[1].trim(), imports, dir) };
  if (imports.has(type)) return { dts: declarationFile(imports.get(type), dir) };
  return null; // string, number, boolean, literal unions: no fields
}

function declarationFile(specifier, dir) {
  const js = specifier.startsWith(".")
    ? resolve(dir, specifier)
    : fileURLToPath(import.meta.resolve(specifier));
  return js.replace(/\.js$/, ".d.ts");
}

function unknownFields(value, shape, path, out) {
  if (!shape || value === null || typeof value !== "object") return out;
  if (shape.array) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, shape.array, `${path}/${i}`, out));
  } else if (shape.map) {
    for (const [k, v] of Object.entries(value)) unknownFields(v, shape.map, `${path}/${k}`, out);
  } else if (shape.dts && !Array.isArray(value)) {
    const fields = classFields(shape.dts);
    for (const [k, v] of Object.entries(fields ? value : {})) {
      if (!fields.has(k)) out.push(`${path || "/"}: unknown field "${k}"`);
      else unknownFields(v, fields.get(k), `${path}/${k}`, out);
    }
  }
  return out;
}

async function modelProblems(base, obj) {
  let Model;
  try {
    Model = (await import(`${base}/${obj.kind}`))[obj.kind];
  } catch {
    return [`${obj.apiVersion} has no kind ${obj.kind}`];
  }
  const problems = [];
  try {
    new Model(obj).validate();
  } catch (err) {
    problems.push(err.message);
  }
  const dts = declarationFile(`${base}/${obj.kind}`, ".");
  return problems.concat(unknownFields(obj, { dts }, "", []));
}

// -- main ------------------------------------------------------------------------------------

const args = process.argv.slice(2);
let crds = {};
if (args[0] === "--crds") {
  crds = loadCrds(args[1]);
  args.splice(0, 2);
}
let failed = 0;
for (const file of args) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    const obj = doc.toJS();
    if (!obj || !obj.apiVersion) continue;
    const where = `${file}: ${obj.kind}/${obj.metadata?.name}`;
    const group = obj.apiVersion.includes("/") ? obj.apiVersion.split("/")[0] : "";
    const crd = crds[`${obj.apiVersion} ${obj.kind}`];
    let problems;
    if (MODELS[obj.apiVersion]) {
      problems = await modelProblems(MODELS[obj.apiVersion], obj);
    } else if (crd) {
      problems = crd.validate(obj) ? [] : ajvProblems(crd.validate.errors);
    } else if (BUILTIN_GROUPS.has(group)) {
      continue;
    } else {
      problems = [`no schema known for ${obj.apiVersion} ${obj.kind}`];
    }
    if (problems.length) {
      console.log(`FAIL ${where}: ${problems.join("; ")}`);
      failed++;
    } else {
      console.log(`ok   ${where}${crd ? ` (${crd.source})` : ""}`);
    }
  }
}
process.exit(failed ? 1 : 0);
