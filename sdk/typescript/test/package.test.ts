// The published entry point is browser-safe ESM: no Node built-ins anywhere in dist/ or in
// the runtime dependency, only relative imports and openapi-fetch.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import * as sdk from "@wharf/sdk";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const IMPORT = /(?:^|[;\s])(?:import|export)\s[^;]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)|\brequire\(/gm;

function specifiers(source: string): string[] {
  const found: string[] = [];
  for (const match of source.matchAll(IMPORT)) {
    if (match[0].includes("require(")) found.push("require(");
    else found.push(match[1] ?? match[2] ?? "");
  }
  return found;
}

test("dist/ imports only its own files and openapi-fetch", () => {
  const files = readdirSync(join(root, "dist")).filter((f) => f.endsWith(".js"));
  assert.ok(files.includes("index.js"));
  for (const file of files) {
    for (const spec of specifiers(readFileSync(join(root, "dist", file), "utf8"))) {
      assert.ok(spec.startsWith("./") || spec === "openapi-fetch", `dist/${file} imports ${spec}`);
    }
  }
});

test("openapi-fetch's ESM build imports nothing", () => {
  const require = createRequire(join(root, "package.json"));
  const entry = join(dirname(require.resolve("openapi-fetch/package.json")), "dist", "index.mjs");
  assert.deepEqual(specifiers(readFileSync(entry, "utf8")), []);
});

test("the entry point exports the documented surface", () => {
  for (const name of ["Wharf", "WharfProblemError", "verifyWebhook", "WebhookVerificationError", "parseRetryAfter"]) {
    assert.equal(typeof (sdk as Record<string, unknown>)[name], "function", name);
  }
  assert.throws(() => new sdk.Wharf({ baseUrl: "", apiKey: "k" }), TypeError);
  assert.throws(() => new sdk.Wharf({ baseUrl: "http://127.0.0.1:1", apiKey: "" }), TypeError);
});
