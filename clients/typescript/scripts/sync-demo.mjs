// Copies the compiled client (dist/*.js) into the demo page's assets, which `plexus serve`
// embeds in its binary, so that running the server needs no npm step.
//
//   node scripts/sync-demo.mjs          copy (after `npm run build`)
//   node scripts/sync-demo.mjs --check  fail if the committed copy differs from dist/

import { readdirSync, readFileSync, writeFileSync, rmSync, mkdirSync, existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, "../dist");
const target = path.resolve(here, "../../../crates/plexus-server/assets/demo/client");
const check = process.argv.includes("--check");

const list = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".js")).sort() : []);
const built = list(dist);
if (built.length === 0) {
  console.error(`no compiled client in ${dist}: run \`npm run build\` first`);
  process.exit(1);
}

if (check) {
  const problems = [];
  const copied = list(target);
  for (const file of built) {
    if (!copied.includes(file)) problems.push(`missing: ${file}`);
    else if (!readFileSync(path.join(dist, file)).equals(readFileSync(path.join(target, file)))) problems.push(`differs: ${file}`);
  }
  for (const file of copied) if (!built.includes(file)) problems.push(`not in dist: ${file}`);
  if (problems.length > 0) {
    console.error(`the demo's copy of the client (${target}) is not the fresh build:\n  ${problems.join("\n  ")}`);
    console.error("run `npm run build && npm run sync-demo` in clients/typescript and commit the result");
    process.exit(1);
  }
  console.log(`demo client copy is up to date (${built.length} files)`);
} else {
  rmSync(target, { recursive: true, force: true });
  mkdirSync(target, { recursive: true });
  for (const file of built) writeFileSync(path.join(target, file), readFileSync(path.join(dist, file)));
  console.log(`copied ${built.length} files to ${target}`);
}
