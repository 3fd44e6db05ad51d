// @azure/identity's ManagedIdentityCredential (npm), unmodified, against whatever answers at
// 169.254.169.254 (azimds, inside the client suite's network namespace).
// Usage: node identity_probe.mjs OUT.json '{"client_id": "...", ...}'
// Writes {case: {token, expiresOnTimestamp} | {error}} for the system-assigned identity and
// each user-assigned selector given.
import { writeFileSync } from "node:fs";
import { ManagedIdentityCredential, DefaultAzureCredential } from "@azure/identity";

const [out, selectorsJson] = process.argv.slice(2);
const selectors = JSON.parse(selectorsJson || "{}");
const scope = "https://management.azure.com/.default";
const cases = {
  system: () => new ManagedIdentityCredential(),
  default_credential: () => new DefaultAzureCredential(),
};
if (selectors.client_id) cases.client_id = () => new ManagedIdentityCredential({ clientId: selectors.client_id });
if (selectors.object_id) cases.object_id = () => new ManagedIdentityCredential({ objectId: selectors.object_id });
if (selectors.resource_id) cases.resource_id = () => new ManagedIdentityCredential({ resourceId: selectors.resource_id });

const results = {};
for (const [name, make] of Object.entries(cases)) {
  try {
    const token = await make().getToken(scope);
    results[name] = { token: token.token, expiresOnTimestamp: token.expiresOnTimestamp };
  } catch (error) {
    results[name] = { error: String(error && error.message || error) };
  }
}
writeFileSync(out, JSON.stringify(results, null, 1));
