"""Ethereum keys for fedchain: development accounts and encrypted keystores.

Two sources of keys, kept apart on purpose:

* **Development accounts** come from the public test mnemonic (``test test ... junk``) at
  ``m/44'/60'/0'/0/i``, the same accounts ganache and anvil create when started by
  :mod:`peer.devnet`, and the ones the embedded chain funds. Their keys are public:
  :class:`peer.chain.ChainClient` hands them out only on devnet chain ids.
* **Keystores** are eth-account encrypted JSON files (Web3 Secret Storage, the format geth
  and clef use), one per account, named ``UTC--<time>--<address>``. Everything that is not a
  devnet signs with a key loaded from one of these.

Example::

    >>> from peer.accounts import dev_accounts
    >>> dev_accounts(1)[0].address
    '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from peer.errors import ConfigError

__all__ = [
    "DEV_MNEMONIC",
    "DEV_HD_PATH",
    "KeystoreEntry",
    "default_keystore_dir",
    "dev_accounts",
    "list_keystores",
    "load_keystore",
    "new_keystore",
    "passphrase_from_env",
]

DEV_MNEMONIC = "test test test test test test test test test test test junk"
"""The well-known development mnemonic (hardhat, anvil): never hold real value with it."""

DEV_HD_PATH = "m/44'/60'/0'/0"
"""BIP-44 Ethereum path; account ``i`` is ``DEV_HD_PATH/i``."""

PASSPHRASE_ENV = "FEDCHAIN_PASSPHRASE"
KEYSTORE_ENV = "FEDCHAIN_KEYSTORE"

Account.enable_unaudited_hdwallet_features()


@dataclass(frozen=True)
class KeystoreEntry:
    """One keystore file: the checksummed address it holds and where it lies."""

    address: str
    path: Path


def dev_accounts(n: int, *, mnemonic: str = DEV_MNEMONIC) -> list[LocalAccount]:
    """The first ``n`` accounts of ``mnemonic`` at ``m/44'/60'/0'/0/i`` (cached: derivation
    costs about 5 ms per account)."""
    if n < 0:
        raise ConfigError(f"number of development accounts must be >= 0, got {n}")
    return [_derive(mnemonic, i) for i in range(n)]


@lru_cache(maxsize=4096)
def _derive(mnemonic: str, index: int) -> LocalAccount:
    return Account.from_mnemonic(mnemonic, account_path=f"{DEV_HD_PATH}/{index}")


def default_keystore_dir() -> Path:
    """``$FEDCHAIN_KEYSTORE`` if set, else ``~/.fedchain/keystore``."""
    env = os.environ.get(KEYSTORE_ENV)
    return Path(env) if env else Path.home() / ".fedchain" / "keystore"


def passphrase_from_env() -> str | None:
    """The keystore passphrase from ``$FEDCHAIN_PASSPHRASE``, or None when unset."""
    return os.environ.get(PASSPHRASE_ENV)


def new_keystore(
    directory: Path,
    passphrase: str,
    *,
    private_key: bytes | None = None,
    kdf: Literal["scrypt", "pbkdf2"] = "scrypt",
    iterations: int | None = None,
) -> KeystoreEntry:
    """Create a new account (or import ``private_key``) encrypted with ``passphrase``.

    The file is written with mode 0600 in ``directory`` (created 0700 if missing). ``kdf`` and
    ``iterations`` default to eth-account's (scrypt, n=2**18, about a second): lower them
    only in tests.
    """
    if not passphrase:
        raise ConfigError("keystore passphrase must not be empty")
    account = Account.from_key(private_key) if private_key is not None else Account.create()
    keyfile = Account.encrypt(account.key, passphrase, kdf=kdf, iterations=iterations)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S.%fZ")
    path = directory / f"UTC--{stamp}--{account.address[2:].lower()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(keyfile, f)
    return KeystoreEntry(address=account.address, path=path)


def load_keystore(path: Path, passphrase: str) -> LocalAccount:
    """Decrypt the keystore file at ``path``; a wrong passphrase raises ConfigError."""
    keyfile = _read_keyfile(path)
    try:
        key = Account.decrypt(keyfile, passphrase)
    except ValueError as exc:  # eth-keyfile: "MAC mismatch" on a wrong passphrase
        raise ConfigError(f"cannot decrypt keystore {path}: wrong passphrase ({exc})") from exc
    return Account.from_key(key)


def list_keystores(directory: Path) -> list[KeystoreEntry]:
    """Keystore files in ``directory`` (sorted by file name, i.e. by creation time); an absent
    directory holds none. Files that are not keystores are ignored."""
    if not directory.is_dir():
        return []
    entries = []
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        try:
            keyfile = _read_keyfile(path)
        except ConfigError:
            continue
        entries.append(KeystoreEntry(address=to_checksum_address(keyfile["address"]), path=path))
    return entries


def _read_keyfile(path: Path) -> dict:
    try:
        keyfile = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"keystore file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a keystore file: {exc}") from exc
    if not isinstance(keyfile, dict) or "crypto" not in keyfile or "address" not in keyfile:
        raise ConfigError(f"{path} is not a keystore file: no 'crypto' and 'address' fields")
    return keyfile
