#!/usr/bin/env node
// CI drift check: regenerate src/schema.ts from openapi/openapi.json into a temporary file and
// compare it with the committed one. Exits 1 (with the first differing lines) when the API
// document changed without `npm run generate`.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const spec = join(root, "..", "..", "openapi", "openapi.json");
const committed = join(root, "src", "schema.ts");
const cli = join(root, "node_modules", "openapi-typescript", "bin", "cli.js");

for (const [what, path] of [["the OpenAPI document", spec], ["openapi-typescript (run npm ci)", cli]]) {
  if (!existsSync(path)) {
    console.error(`check-generated: ${what} is missing: ${path}`);
    process.exit(2);
  }
}

const dir = mkdtempSync(join(tmpdir(), "wharf-sdk-schema-"));
try {
  process.exitCode = check(join(dir, "schema.ts"));
} finally {
  rmSync(dir, { recursive: true, force: true });
}

function check(fresh) {
  // Same arguments as `npm run generate`, run from the package directory.
  const run = spawnSync(process.execPath, [cli, "../../openapi/openapi.json", "-o", fresh], {
    cwd: root,
    encoding: "utf8",
  });
  if (run.status !== 0) {
    console.error(`check-generated: openapi-typescript failed:\n${run.stdout}${run.stderr}`);
    return 2;
  }
  if (!existsSync(committed)) {
    console.error("check-generated: src/schema.ts is missing: run `npm run generate` in sdk/typescript and commit it.");
    return 1;
  }
  const want = readFileSync(fresh, "utf8");
  const have = readFileSync(committed, "utf8");
  if (want === have) {
    console.log(`check-generated: src/schema.ts is up to date with ${relative(root, spec)}`);
    return 0;
  }
  const a = have.split("\n");
  const b = want.split("\n");
  let line = 0;
  while (line < a.length && line < b.length && a[line] === b[line]) line++;
  console.error(
    [
      "check-generated: sdk/typescript/src/schema.ts is out of date with openapi/openapi.json.",
      "The OpenAPI document changed without regenerating the SDK's types. Fix it with:",
      "    cd sdk/typescript && npm run generate && npm run build",
      "and commit src/schema.ts (then adapt src/client.ts if an operation changed).",
      `First difference at line ${line + 1}:`,
      `  committed:   ${a[line] ?? "<end of file>"}`,
      `  regenerated: ${b[line] ?? "<end of file>"}`,
      `(${a.length} lines committed, ${b.length} regenerated)`,
    ].join("\n"),
  );
  return 1;
}
