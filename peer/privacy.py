"""Client-level differential privacy of a peer's update, and the privacy it spends.

Mechanism (DP-FedAvg, McMahan et al. 2018, "Learning differentially private
recurrent language models"), applied by each peer to its own update ``u``::

    u_clipped = u * min(1, C / ||u||_2)          # L2 norm at most C
    u_private = u_clipped + N(0, (sigma * C)^2 I)

The unit of privacy is the peer's whole local dataset: whatever its data, the
released vector is a clipped update plus Gaussian noise calibrated to C, so one
round is a Gaussian mechanism with noise multiplier ``sigma`` (sensitivity C,
add/remove adjacency of the peer's contribution, as in DP-FedAvg).

Accounting uses Opacus's accountants (Meta; RDP by default, PRV optional). The RDP
accountant composes the Renyi-DP of the (sub)sampled Gaussian mechanism over rounds
(Mironov 2017; Mironov, Talwar, Zhang 2019, "Renyi Differential Privacy of the
Sampled Gaussian Mechanism") and converts to (epsilon, delta) with the bound of
Balle et al. 2020. ``sample_rate`` defaults to 1: committee selection in fedchain is
public (derived from chain state), so it gives no privacy amplification; set it to
the selection probability only if the selection is secret from the adversary.

Noise must be secret: by default it is drawn from a generator seeded with OS entropy.
A fixed ``noise_seed`` makes runs reproducible (tests, simulations) but anyone who
knows the seed can subtract the noise: never use one in a real federation.
(Floating-point Gaussian sampling has known subtle leaks, Mironov 2012; out of scope.)

Example::

    dp = DPConfig(clip=1.0, noise_multiplier=1.1, delta=1e-5)
    acct = PrivacyAccountant(delta=dp.delta)
    noisy = clip_and_noise(update, dp, generator=dp.generator())
    acct.step(dp)
    print(acct.round_epsilon(dp), acct.epsilon())
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from peer.errors import ConfigError

__all__ = ["DPConfig", "clip_and_noise", "clip_update", "PrivacyAccountant", "ACCOUNTANTS"]

ACCOUNTANTS = ("rdp", "prv")


@dataclass(frozen=True)
class DPConfig:
    """Client-level DP options: clip norm ``clip`` (C), ``noise_multiplier`` (sigma;
    noise std is sigma*C), target ``delta``, per-round ``sample_rate`` used by the
    accountant, ``accountant`` ("rdp" or "prv") and an optional reproducible
    ``noise_seed`` (testing only, see the module docstring)."""

    clip: float = 1.0
    noise_multiplier: float = 1.0
    delta: float = 1e-5
    sample_rate: float = 1.0
    accountant: str = "rdp"
    noise_seed: int | None = None

    def __post_init__(self) -> None:
        def num(x: Any) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        if not (num(self.clip) and self.clip > 0):
            raise ConfigError(f"dp.clip must be a finite number > 0, got {self.clip!r}")
        if not (num(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise ConfigError(f"dp.noise_multiplier must be >= 0, got {self.noise_multiplier!r}")
        if not (num(self.delta) and 0 < self.delta < 1):
            raise ConfigError(f"dp.delta must be in (0, 1), got {self.delta!r}")
        if not (num(self.sample_rate) and 0 < self.sample_rate <= 1):
            raise ConfigError(f"dp.sample_rate must be in (0, 1], got {self.sample_rate!r}")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(f"dp.accountant must be one of {ACCOUNTANTS}, "
                              f"got {self.accountant!r}")
        seed = self.noise_seed
        if seed is not None and (type(seed) is not int or seed < 0):
            raise ConfigError(f"dp.noise_seed must be a non-negative int, got {self.noise_seed!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DPConfig:
        """Build from a TOML table; unknown keys are a ConfigError naming them."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"dp: unknown option(s) {unknown}")
        return cls(**d)

    def generator(self, *tags: int) -> np.random.Generator:
        """The noise generator: seeded from (noise_seed, *tags) if a seed is set, else
        from 128 bits of OS entropy."""
        if self.noise_seed is None:
            return np.random.default_rng(secrets.randbits(128))
        return np.random.default_rng(np.random.SeedSequence([self.noise_seed, *tags]))


def clip_update(update: np.ndarray, clip: float) -> np.ndarray:
    """``update * min(1, clip / ||update||_2)`` as float32 (norm computed in float64)."""
    u = np.asarray(update)
    if u.dtype != np.float32 or u.ndim != 1:
        raise ConfigError(f"update must be a 1-D float32 vector, got {u.dtype} {u.shape}")
    if not np.isfinite(u).all():
        raise ConfigError("update contains NaN or Inf; cannot clip it")
    norm = float(np.linalg.norm(u.astype(np.float64)))
    if norm <= clip:
        return u.copy()
    return (u.astype(np.float64) * (clip / norm)).astype(np.float32)


def clip_and_noise(update: np.ndarray, cfg: DPConfig, *,
                   generator: np.random.Generator) -> np.ndarray:
    """Clip ``update`` to L2 norm ``cfg.clip`` and add N(0, (sigma*C)^2) to every
    coordinate; float32 out. ``generator`` must be secret in a real federation."""
    clipped = clip_update(update, cfg.clip)
    std = cfg.noise_multiplier * cfg.clip
    if std == 0:
        return clipped
    noise = generator.normal(0.0, std, size=clipped.shape)
    return (clipped.astype(np.float64) + noise).astype(np.float32)


class PrivacyAccountant:
    """The (epsilon, delta) a peer has spent over the rounds it released a DP update.

    A thin wrapper over Opacus's accountant (``opacus.accountants``), one step per
    round. ``history`` (a list of [noise_multiplier, sample_rate, rounds]) is plain
    data: persist it with :meth:`to_dict` so a restarted peer keeps its tally.
    """

    def __init__(self, *, delta: float = 1e-5, kind: str = "rdp",
                 history: list[tuple[float, float, int]] | None = None) -> None:
        if not (isinstance(delta, float) and 0 < delta < 1):
            raise ConfigError(f"delta must be a float in (0, 1), got {delta!r}")
        if kind not in ACCOUNTANTS:
            raise ConfigError(f"accountant must be one of {ACCOUNTANTS}, got {kind!r}")
        self.delta = delta
        self.kind = kind
        self.history: list[tuple[float, float, int]] = [
            (float(s), float(q), int(n)) for s, q, n in (history or [])]

    @property
    def rounds(self) -> int:
        """Rounds accounted so far."""
        return sum(n for _, _, n in self.history)

    def step(self, cfg: DPConfig, *, rounds: int = 1) -> None:
        """Record ``rounds`` releases with ``cfg``'s noise multiplier and sample rate."""
        if type(rounds) is not int or rounds < 1:
            raise ConfigError(f"rounds must be a positive int, got {rounds!r}")
        key = (float(cfg.noise_multiplier), float(cfg.sample_rate))
        if self.history and self.history[-1][:2] == key:
            s, q, n = self.history[-1]
            self.history[-1] = (s, q, n + rounds)
        else:
            self.history.append((*key, rounds))

    def epsilon(self, delta: float | None = None) -> float:
        """Total epsilon spent at ``delta`` (default: the accountant's); 0 before any
        round, ``inf`` if a round had no noise."""
        return _epsilon(self.history, self.delta if delta is None else delta, self.kind)

    def round_epsilon(self, cfg: DPConfig) -> float:
        """Epsilon at this accountant's delta of one round with ``cfg``, on its own."""
        return _epsilon([(float(cfg.noise_multiplier), float(cfg.sample_rate), 1)],
                        self.delta, self.kind)

    def to_dict(self) -> dict[str, Any]:
        return {"delta": self.delta, "kind": self.kind,
                "history": [list(h) for h in self.history]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrivacyAccountant:
        history = [(float(s), float(q), int(n)) for s, q, n in d["history"]]
        return cls(delta=float(d["delta"]), kind=str(d["kind"]), history=history)


def _opacus_accountant(kind: str) -> Any:
    try:  # imported here: opacus takes ~2 s to import, and only DP runs need it
        from opacus.accountants import PRVAccountant, RDPAccountant
    except ImportError as exc:
        raise ConfigError("differential privacy accounting needs the 'opacus' package "
                          "(pip install opacus==1.6.0 opt-einsum; it reuses the installed "
                          "torch)") from exc
    return RDPAccountant() if kind == "rdp" else PRVAccountant()


def _epsilon(history: list[tuple[float, float, int]], delta: float, kind: str) -> float:
    if not history:
        return 0.0
    if any(sigma == 0 for sigma, _, _ in history):
        return math.inf
    acct = _opacus_accountant(kind)
    acct.history = [tuple(h) for h in history]
    return float(acct.get_epsilon(delta=delta))
