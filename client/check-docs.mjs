// `make lint`: every JavaScript snippet of docs/client.md must parse (```js, ```jsx, and the
// inline <script> of ```html blocks), so the docs cannot carry code that would not run.
import { transform } from "esbuild";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const DOC = join(dirname(fileURLToPath(import.meta.url)), "..", "docs", "client.md");
const text = readFileSync(DOC, "utf8");
const blocks = [...text.matchAll(/```(js|jsx|html)\n([\s\S]*?)```/g)];
let failures = 0;
let checked = 0;
for (const [, lang, body] of blocks) {
  const sources = lang === "html"
    ? [...body.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1])
    : [body];
  for (const source of sources) {
    checked += 1;
    try {
      // Top-level await and module syntax are fine in snippets; JSX only in ```jsx.
      await transform(source, { loader: lang === "jsx" ? "jsx" : "js", format: "esm", logLevel: "silent" });
    } catch (error) {
      failures += 1;
      console.error(`docs/client.md: a \`\`\`${lang} snippet does not parse:\n${error.message}\n${source}`);
    }
  }
}
if (failures) process.exit(1);
console.log(`client: ${checked} JavaScript snippets of docs/client.md parse`);
