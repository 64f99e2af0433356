#!/usr/bin/env bash
# System packages the install needs: gcc and GMP headers (libp2p pins fastecdsa, which
# compiles from source), and node/npm for the devnet chains and the Solidity compiler.
set -euo pipefail
missing=()
command -v gcc >/dev/null || missing+=(build-essential)
compgen -G "/usr/include/gmp.h" >/dev/null || compgen -G "/usr/include/*/gmp.h" >/dev/null || missing+=(libgmp-dev)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
