#!/usr/bin/env bash
# Static analysis of contracts/Federation.sol with Slither; exits non-zero on any finding of
# medium or high impact (OpenZeppelin's own code is filtered out; our suppressions, each with
# its reason, are in the contract: see the "Slither note" there).
#
# Offline: Slither compiles through devnet/solc (solc-js, the compiler of the artifacts) in
# standard-JSON mode, with the artifacts' settings (shanghai, optimizer 1000 runs).
# Slither lives in its own venv (.venv-slither, `make slither-setup`): it needs web3<8.
#
# Usage: devnet/slither.sh [extra slither arguments, e.g. --json out.json]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
slither="${SLITHER:-$root/.venv-slither/bin/slither}"
if [ ! -x "$slither" ]; then
    echo "slither.sh: $slither not found: run \`make slither-setup\`" \
        "(creates .venv-slither from devnet/slither-requirements.txt)" >&2
    exit 3
fi
if [ ! -d "$root/devnet/node_modules/solc" ]; then
    echo "slither.sh: solc-js missing in devnet/node_modules: run \`make setup\`" >&2
    exit 3
fi

input="$(mktemp "${TMPDIR:-/tmp}/fedchain-slither.XXXXXX.json")"
trap 'rm -f "$input"' EXIT
cat >"$input" <<'EOF'
{
  "language": "Solidity",
  "sources": {"contracts/Federation.sol": {"urls": ["contracts/Federation.sol"]}},
  "settings": {
    "evmVersion": "shanghai",
    "optimizer": {"enabled": true, "runs": 1000},
    "remappings": ["@openzeppelin/=devnet/node_modules/@openzeppelin/"]
  }
}
EOF

cd "$root"
exec "$slither" "$input" \
    --compile-force-framework solc-json \
    --solc "$root/devnet/solc" \
    --filter-paths "node_modules" \
    --fail-medium \
    "$@"
