// Validates the prometheus-operator objects (ServiceMonitor, PrometheusRule)
// in `kustomize build` output against the operator's JSON schemas, as shipped
// in @kubernetes-models/prometheus-operator (`validate()` throws on the first
// invalid object). kubernetes-validate knows only built-in kinds and skips
// these. Run by tests/kubernetes.rs:
//   node tests/kubernetes/validate-crds.mjs FILE...
// Prints one line per validated object; exits 1 on any invalid or unknown
// prometheus-operator object, and when a file holds none at all.
import { readFileSync } from "node:fs";
import { loadAll } from "js-yaml";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: validate-crds.mjs FILE...");
  process.exit(2);
}
let failed = false;
for (const file of files) {
  let checked = 0;
  for (const doc of loadAll(readFileSync(file, "utf8"))) {
    if (!doc || !String(doc.apiVersion).startsWith("monitoring.coreos.com/")) continue;
    const where = `${file}: ${doc.kind} ${doc.metadata?.namespace}/${doc.metadata?.name}`;
    const Model = doc.apiVersion === "monitoring.coreos.com/v1" ? monitoring[doc.kind] : undefined;
    if (typeof Model !== "function" || Model.kind !== doc.kind) {
      console.error(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
      failed = true;
      continue;
    }
    try {
      new Model(doc).validate();
      console.log(`${where}: valid`);
      checked++;
    } catch (e) {
      console.error(`${where}: ${e.message}`);
      failed = true;
    }
  }
  if (checked === 0) {
    console.error(`${file}: no valid prometheus-operator object`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
