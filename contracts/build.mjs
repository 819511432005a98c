// Compiles contracts/src (the deployed contract) and contracts/test (test-only
// contracts) with the solc pinned in package.json, and writes one Foundry-style
// artifact per contract ({abi, bytecode: {object}, deployedBytecode: {object}}),
// the shape alloy's `sol!` reads. Usage: node build.mjs <out-dir>
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const solc = require("solc");
const here = path.dirname(new URL(import.meta.url).pathname);
const outDir = path.resolve(process.argv[2] ?? path.join(here, "artifacts"));

// Settings that decide the bytecode; changing any of them changes the artifacts.
const settings = {
  optimizer: { enabled: true, runs: 200 },
  viaIR: true,
  evmVersion: "cancun",
  metadata: { bytecodeHash: "none", appendCBOR: false },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

// Source unit names are relative to contracts/ (solc's --base-path .), and
// imports of "@openzeppelin/..." resolve in node_modules (--include-path).
const sources = {};
for (const dir of ["src", "test"]) {
  for (const file of fs.readdirSync(path.join(here, dir)).sort()) {
    if (file.endsWith(".sol")) {
      const unit = `${dir}/${file}`;
      sources[unit] = { content: fs.readFileSync(path.join(here, unit), "utf8") };
    }
  }
}

function findImports(unit) {
  for (const base of [here, path.join(here, "node_modules")]) {
    const file = path.join(base, unit);
    if (fs.existsSync(file)) return { contents: fs.readFileSync(file, "utf8") };
  }
  return { error: `not found: ${unit} (run \`make deps\` to install node_modules)` };
}

const input = { language: "Solidity", sources, settings };
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors ?? []).filter((e) => e.severity === "error");
for (const e of output.errors ?? []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(1);

const written = [];
for (const [unit, contracts] of Object.entries(output.contracts)) {
  if (!unit.startsWith("src/") && !unit.startsWith("test/")) continue;
  for (const [name, c] of Object.entries(contracts)) {
    const bytecode = c.evm.bytecode.object;
    if (bytecode.length === 0) continue; // abstract contracts, interfaces, libraries without code
    const dir = unit.startsWith("test/") ? path.join(outDir, "test") : outDir;
    fs.mkdirSync(dir, { recursive: true });
    const artifact = {
      contractName: name,
      sourceName: unit,
      compiler: { solc: solc.version(), settings: { optimizer: settings.optimizer, viaIR: settings.viaIR, evmVersion: settings.evmVersion } },
      abi: c.abi,
      bytecode: { object: `0x${bytecode}` },
      deployedBytecode: { object: `0x${c.evm.deployedBytecode.object}` },
    };
    const file = path.join(dir, `${name}.json`);
    fs.writeFileSync(file, JSON.stringify(artifact, null, 2) + "\n");
    written.push(`${path.relative(outDir, file)} (${c.evm.deployedBytecode.object.length / 2} bytes deployed)`);
  }
}
console.log(`solc ${solc.version()}: compiled\n  ${written.join("\n  ")}`);
