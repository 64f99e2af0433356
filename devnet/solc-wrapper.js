#!/usr/bin/env node
// A `solc` command line on top of solc-js (the npm package `solc`), for tools that want a solc
// binary: Foundry (`solc = ".../devnet/solc"` in foundry.toml) and Slither (`--solc devnet/solc
// --solc-standard-json`). Nothing is downloaded: the compiler is the pinned solc-js in
// devnet/node_modules, the one compile.js uses for the artifacts.
//
// Supported, as native solc does them:
//   solc --version                     "Version: 0.8.37+commit.<sha>.Emscripten.clang" on the last line
//   solc --standard-json [flags]       standard JSON on stdin -> standard JSON on stdout
// Flags accepted with --standard-json: --base-path DIR, --include-path DIR (repeatable),
// --allow-paths A,B (accepted; the callback below only reads files under the base path, the
// include paths, the allowed paths and devnet/node_modules), --no-import-callback, --pretty-json.
// Anything else is refused with a message naming the flag, rather than silently ignored.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const NODE_MODULES = path.join(__dirname, "node_modules");

function usage(message) {
  process.stderr.write(`solc-wrapper: ${message}\n`);
  process.stderr.write("usage: solc --version | solc --standard-json [--base-path D] [--include-path D]...\n");
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    mode: null, basePath: process.cwd(), includePaths: [], allowPaths: [], importCallback: true, pretty: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "--version" || arg === "-v") opts.mode = "version";
    else if (arg === "--standard-json") opts.mode = "standard-json";
    else if (arg === "--base-path") opts.basePath = path.resolve(value());
    else if (arg === "--include-path") opts.includePaths.push(path.resolve(value()));
    else if (arg === "--allow-paths") {
      opts.allowPaths.push(...value().split(",").filter(Boolean).map((p) => path.resolve(p)));
    }
    else if (arg === "--no-import-callback") opts.importCallback = false;
    else if (arg === "--pretty-json") opts.pretty = true;
    else usage(`unsupported argument ${JSON.stringify(arg)} (only --version and --standard-json are implemented)`);
  }
  if (!opts.mode) usage("no mode given");
  return opts;
}

/// Resolves an import (or a source `urls` entry) the way solc's file reader does: relative to
/// the base path, then to each include path; plus devnet/node_modules for package imports.
function makeImportCallback(opts) {
  const roots = [opts.basePath, ...opts.includePaths, ...opts.allowPaths, NODE_MODULES];
  return (importPath) => {
    const candidates = path.isAbsolute(importPath) ? [importPath] : roots.map((r) => path.join(r, importPath));
    for (const c of candidates) {
      if (fs.existsSync(c) && fs.statSync(c).isFile()) return { contents: fs.readFileSync(c, "utf8") };
    }
    return { error: `File not found: ${importPath} (looked in ${roots.join(", ")})` };
  };
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.mode === "version") {
    process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
    return;
  }
  const input = fs.readFileSync(0, "utf8");
  const callbacks = opts.importCallback ? { import: makeImportCallback(opts) } : {};
  const output = solc.compile(input, callbacks);
  // Re-serialise: checks it is JSON and drops anything solc-js printed around it.
  const parsed = JSON.parse(output);
  process.stdout.write(JSON.stringify(parsed, null, opts.pretty ? 2 : 0) + "\n");
}

main();
