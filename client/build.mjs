// Builds the browser client from src/ (the source of truth) into the files that ship:
//   rtdelivery.mjs  ES module (no global side effect), for bundlers and <script type="module">
//   rtdelivery.js   classic script (IIFE) that sets globalThis.RTDelivery
//   rtdelivery.d.ts TypeScript declarations of both (types/rtdelivery.d.ts)
// They go to dist/ (the npm package) and ../rtdelivery/static/rtdelivery/ (the Django app's
// static files, committed so the Python wheel needs no node).
//
//   node build.mjs                 write both
//   node build.mjs --outdir DIR    write only DIR
//   node build.mjs --check         build into a temporary directory; fail if the committed
//                                  static files (and dist/, when present) differ from it
import { build } from "esbuild";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const STATIC = join(HERE, "..", "rtdelivery", "static", "rtdelivery");
const DIST = join(HERE, "dist");
const FILES = ["rtdelivery.js", "rtdelivery.mjs", "rtdelivery.d.ts"];
const pkg = JSON.parse(readFileSync(join(HERE, "package.json"), "utf8"));

const BANNER =
  `/*! rtdelivery ${pkg.version}: the browser client of rtdelivery (BSD-3-Clause).\n` +
  ` * Built from client/src by client/build.mjs: edit the source, then \`make client\`. */`;

async function bundle(entry, format) {
  const result = await build({
    entryPoints: [join(HERE, "src", entry)],
    bundle: true,
    format,
    target: "es2020",
    platform: "browser",
    charset: "utf8",
    legalComments: "none",
    banner: { js: BANNER },
    write: false,
    logLevel: "warning",
  });
  return result.outputFiles[0].text;
}

async function outputs() {
  const match = /VERSION = "([^"]+)"/.exec(readFileSync(join(HERE, "src", "constants.mjs"), "utf8"));
  if (!match || match[1] !== pkg.version) {
    throw new Error(`src/constants.mjs VERSION (${match && match[1]}) != package.json version (${pkg.version})`);
  }
  return {
    "rtdelivery.js": await bundle("global.mjs", "iife"),
    "rtdelivery.mjs": await bundle("index.mjs", "esm"),
    "rtdelivery.d.ts": readFileSync(join(HERE, "types", "rtdelivery.d.ts"), "utf8"),
  };
}

function write(dir, files) {
  mkdirSync(dir, { recursive: true });
  for (const name of FILES) writeFileSync(join(dir, name), files[name]);
}

function differences(dir, files) {
  return FILES.filter((name) => {
    const path = join(dir, name);
    return !existsSync(path) || readFileSync(path, "utf8") !== files[name];
  }).map((name) => join(dir, name));
}

const args = process.argv.slice(2);
const files = await outputs();
if (args[0] === "--check") {
  const tmp = mkdtempSync(join(tmpdir(), "rtdelivery-build-"));
  try {
    write(tmp, files);
    const fresh = Object.fromEntries(FILES.map((name) => [name, readFileSync(join(tmp, name), "utf8")]));
    const stale = differences(STATIC, fresh).concat(existsSync(DIST) ? differences(DIST, fresh) : []);
    if (stale.length) {
      console.error(`client: these built files differ from a fresh build of client/src:\n  ${stale.join("\n  ")}`);
      console.error("client: run `make client` and commit the result.");
      process.exit(1);
    }
    console.log("client: the committed builds match client/src");
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
} else if (args[0] === "--outdir" && args[1]) {
  write(args[1], files);
} else if (args.length === 0) {
  write(DIST, files);
  write(STATIC, files);
  // The npm package carries the project's licence (npm packs a LICENSE at the package root).
  writeFileSync(join(HERE, "LICENSE"), readFileSync(join(HERE, "..", "LICENSE"), "utf8"));
} else {
  console.error("usage: node build.mjs [--check | --outdir DIR]");
  process.exit(2);
}
