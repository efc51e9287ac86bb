#!/usr/bin/env node
// Regenerates src/generated/ into a temporary directory from ../openapi.json and fails when it
// differs from the checked-in files: the SDK's types cannot drift from the document.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const document = resolve(root, "../openapi.json");
const require = createRequire(import.meta.url);
const otsPackage = require.resolve("openapi-typescript/package.json");
const otsBin = resolve(dirname(otsPackage), JSON.parse(readFileSync(otsPackage, "utf8")).bin["openapi-typescript"]);

const temp = mkdtempSync(join(tmpdir(), "executor-sdk-generated-"));
const run = (args) => {
  const result = spawnSync(process.execPath, args, { cwd: root, encoding: "utf8" });
  if (result.status !== 0) {
    process.stderr.write(result.stdout + result.stderr);
    process.exit(2);
  }
};
let stale = [];
try {
  run([otsBin, document, "--output", join(temp, "schema.ts")]);
  run([join(root, "scripts/generate-problems.mjs"), document, join(temp, "problems.ts")]);
  for (const name of ["schema.ts", "problems.ts"]) {
    const checkedIn = join(root, "src/generated", name);
    if (!existsSync(checkedIn) || readFileSync(checkedIn, "utf8") !== readFileSync(join(temp, name), "utf8")) {
      stale.push(`src/generated/${name}`);
    }
  }
} finally {
  rmSync(temp, { recursive: true, force: true });
}
if (stale.length) {
  console.error(`stale generated files (run \`npm run generate\`): ${stale.join(", ")}`);
  process.exit(1);
}
console.log("src/generated/ matches ../openapi.json");
