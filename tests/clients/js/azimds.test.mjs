// docs/testing.md's JavaScript example (kept identical to it by examples/test_examples.py).
// Run: node --test azimds.test.mjs
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ManagedIdentityCredential } from "@azure/identity";

let server, url;

before(async () => {
  const data = mkdtempSync(join(tmpdir(), "azimds-"));
  server = spawn(process.env.AZIMDS_BIN ?? "azimds",
    ["serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--data", data],
    { stdio: ["ignore", "pipe", "inherit"] });
  const [line] = await once(createInterface({ input: server.stdout }), "line");
  url = `http://${JSON.parse(line).guest[0]}`; // the ready line: printed once serving
  process.env.AZURE_POD_IDENTITY_AUTHORITY_HOST = url; // @azure/identity's override
});

after(() => server.kill());

test("reads instance metadata", async () => {
  const response = await fetch(`${url}/metadata/instance/compute?api-version=2021-02-01`,
    { headers: { Metadata: "true" } });
  assert.equal((await response.json()).name, "azimds-demo");
});

test("gets a managed identity token", async () => {
  const token = await new ManagedIdentityCredential().getToken("https://management.azure.com/.default");
  assert.equal(token.token.split(".").length, 3); // a JWT, signed by azimds
});
