#!/usr/bin/env node
// Compiles every contracts/*.sol and contracts/test/*.sol with solc-js (the npm `solc`
// package pinned in package.json: no compiler download) and writes one artifact per contract
// to contracts/build/<Name>.json: abi, bytecode, deployedBytecode, solcVersion, evmVersion,
// source path and sourceHash (sha256 of the source file), which tests/test_artifacts.py
// compares against the sources to catch stale artifacts.
//
// evmVersion is shanghai so that one artifact runs on ganache 7.9 (shanghai), anvil and the
// embedded py-evm; solc 0.8.37 would otherwise default to osaka (see shared/PITFALLS.md).
"use strict";
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const solc = require("solc");

const root = path.resolve(__dirname, "..");
const contractsDir = path.join(root, "contracts");
const buildDir = path.join(contractsDir, "build");
const nodeModules = path.join(__dirname, "node_modules");
const EVM_VERSION = "shanghai";

function sources() {
  const out = {};
  for (const dir of ["", "test"]) {
    const full = path.join(contractsDir, dir);
    if (!fs.existsSync(full)) continue;
    for (const f of fs.readdirSync(full).sort()) {
      if (f.endsWith(".sol")) {
        const rel = path.posix.join("contracts", dir, f);
        out[rel] = { content: fs.readFileSync(path.join(root, rel), "utf8") };
      }
    }
  }
  return out;
}

function findImports(importPath) {
  const candidates = [path.join(nodeModules, importPath), path.join(root, importPath)];
  for (const c of candidates) {
    if (fs.existsSync(c)) return { contents: fs.readFileSync(c, "utf8") };
  }
  return { error: `import not found: ${importPath}` };
}

function main() {
  const srcs = sources();
  const input = {
    language: "Solidity",
    sources: srcs,
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: { enabled: true, runs: 1000 },
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  // Our own warnings and every error are shown; warnings inside OpenZeppelin are not ours.
  for (const e of output.errors || []) {
    const own = !e.sourceLocation || !e.sourceLocation.file.startsWith("@openzeppelin/");
    if (e.severity === "error" || own) console.error(e.formattedMessage);
  }
  if (errors.length) process.exit(1);
  fs.mkdirSync(buildDir, { recursive: true });
  const version = solc.version();
  for (const [src, contracts] of Object.entries(output.contracts)) {
    if (!(src in srcs)) continue;
    const sourceHash = crypto.createHash("sha256").update(fs.readFileSync(path.join(root, src))).digest("hex");
    for (const [name, c] of Object.entries(contracts)) {
      if (!c.evm.bytecode.object) continue; // interfaces and abstract contracts
      const artifact = {
        contractName: name,
        source: src,
        sourceHash,
        solcVersion: version,
        evmVersion: EVM_VERSION,
        optimizerRuns: input.settings.optimizer.runs,
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
      };
      fs.writeFileSync(path.join(buildDir, `${name}.json`), JSON.stringify(artifact, null, 1) + "\n");
      console.log(`compiled ${src}:${name} (${c.evm.deployedBytecode.object.length / 2} bytes)`);
    }
  }
}

main();
