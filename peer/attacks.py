"""Byzantine attacks, for simulations and robustness tests.

Each model-poisoning attack is a pure function of the honest updates (a float32
tensor [N, d] or a sequence of N one-dimensional arrays/tensors) returning the
one float32 vector [d] that every Byzantine peer sends (the strongest known
attacks on robust rules have all attackers collude on one vector). Randomised
attacks take a ``seed`` and use their own ``torch.Generator``.

=======================  ===================================================
``sign_flip``            -scale x (own update, or the honest mean)
``gaussian_noise``       N(0, std^2) per coordinate (around ``own`` if given)
``alie``                 "A little is enough" (Baruch et al. 2019):
                         mean - z_max x std per coordinate
``ipm``                  inner-product manipulation (Xie et al. 2020): -eps x mean
``min_max``              mean + gamma x dev, the largest gamma whose distance to
                         every honest update stays within the honest diameter
                         (Shejwalkar & Houmansadr 2021)
``min_sum``              idem, with the sum of squared distances
``mimic``                a copy of one honest update (Karimireddy et al. 2022)
``scaled_replacement``   model replacement (Bagdasaryan et al. 2020):
                         scale x own - (scale - 1) x honest mean
``nan_inf``              NaN / +-Inf values (must be rejected by validation)
=======================  ===================================================

``label_flip(y, n_classes)`` is the data-poisoning attack: train on flipped labels.
:func:`make_byzantine` calls any attack by name with the options it accepts.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

from peer.errors import FedchainError

__all__ = [
    "ATTACKS",
    "AttackError",
    "sign_flip",
    "gaussian_noise",
    "alie",
    "ipm",
    "min_max",
    "min_sum",
    "mimic",
    "scaled_replacement",
    "nan_inf",
    "label_flip",
    "make_byzantine",
]

Honest = torch.Tensor | np.ndarray | Sequence[np.ndarray] | Sequence[torch.Tensor]


class AttackError(FedchainError):
    """An attack was called with invalid inputs or options; the message names them."""


def _stack(honest: Honest) -> torch.Tensor:
    """The honest updates as a float32 [N, d] tensor (simulation sizes: stacking is fine)."""
    if isinstance(honest, torch.Tensor):
        x = honest.detach()
    elif isinstance(honest, np.ndarray):
        x = torch.from_numpy(honest)
    else:
        rows = [torch.as_tensor(np.asarray(r) if not isinstance(r, torch.Tensor) else r) for r in honest]
        if not rows:
            raise AttackError("no honest updates given")
        x = torch.stack(rows)
    if x.ndim != 2 or x.shape[0] == 0:
        raise AttackError(f"honest updates have shape {tuple(x.shape)}, expected [N >= 1, d]")
    return x.to(torch.float32)


def _vec(v: torch.Tensor | np.ndarray, d: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(v).detach().to(torch.float32).reshape(-1)
    if t.shape[0] != d:
        raise AttackError(f"{name} has {t.shape[0]} values, the updates have {d}")
    return t


def sign_flip(honest: Honest, *, own: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
    """The attacker's own update (default: the honest mean) with its sign flipped, times ``scale``."""
    x = _stack(honest)
    base = x.mean(0) if own is None else _vec(own, x.shape[1], "own")
    return -float(scale) * base


def gaussian_noise(
    honest: Honest, *, own: torch.Tensor | None = None, std: float = 1.0, seed: int = 0
) -> torch.Tensor:
    """Gaussian vector N(0, std^2) per coordinate, added to ``own`` when given."""
    x = _stack(honest)
    if not std >= 0.0:
        raise AttackError(f"std = {std}; need std >= 0")
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(x.shape[1], generator=gen) * float(std)
    return noise if own is None else _vec(own, x.shape[1], "own") + noise


def alie(honest: Honest, *, f: int, n: int | None = None, z: float | None = None) -> torch.Tensor:
    """ALIE: mean - z * std per coordinate, z from the number of peers n and attackers f.

    Baruch et al.: s = floor(n / 2 + 1) - f honest peers must be won over, and
    z_max = Phi^-1((n - s) / n). ``n`` defaults to N honest + f.
    """
    x = _stack(honest)
    total = x.shape[0] + f if n is None else int(n)
    if z is None:
        s = total // 2 + 1 - f
        p = (total - s) / total
        if not 0.0 < p < 1.0:
            raise AttackError(f"alie: n = {total}, f = {f} give Phi^-1({p}); need 0 < (n - s) / n < 1")
        z = NormalDist().inv_cdf(p)
    std = x.std(0, unbiased=False) if x.shape[0] > 1 else torch.zeros(x.shape[1])
    return x.mean(0) - float(z) * std


def ipm(honest: Honest, *, epsilon: float = 0.1) -> torch.Tensor:
    """Inner-product manipulation: -epsilon x the honest mean."""
    return -float(epsilon) * _stack(honest).mean(0)


def _deviation(x: torch.Tensor, kind: str) -> torch.Tensor:
    mu = x.mean(0)
    if kind == "std":
        return -(x.std(0, unbiased=False))
    if kind == "unit":
        norm = torch.linalg.vector_norm(mu)
        return -mu / norm if norm > 0 else torch.zeros_like(mu)
    if kind == "sign":
        return -torch.sign(mu)
    raise AttackError(f"deviation {kind!r}; choose 'std', 'unit' or 'sign'")


def _search_gamma(ok: Callable[[float], bool], gamma_init: float, steps: int) -> float:
    """Largest gamma in [0, hi] with ok(gamma), by doubling then bisection (deterministic)."""
    lo, hi = 0.0, float(gamma_init)
    while ok(hi) and hi < 1e12:
        lo, hi = hi, hi * 2.0
    for _ in range(steps):
        mid = (lo + hi) / 2.0
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def min_max(honest: Honest, *, deviation: str = "std", gamma_init: float = 10.0, steps: int = 40) -> torch.Tensor:
    """mean + gamma * dev with max_i ||mal - x_i|| <= max_{i,j} ||x_i - x_j||, gamma largest."""
    x = _stack(honest).to(torch.float64)
    mu, dev = x.mean(0), _deviation(x, deviation)
    bound = torch.cdist(x, x).max()

    def ok(g: float) -> bool:
        return bool(torch.linalg.vector_norm(x - (mu + g * dev), dim=1).max() <= bound)

    return (mu + _search_gamma(ok, gamma_init, steps) * dev).to(torch.float32)


def min_sum(honest: Honest, *, deviation: str = "std", gamma_init: float = 10.0, steps: int = 40) -> torch.Tensor:
    """mean + gamma * dev with sum_i ||mal - x_i||^2 <= max_i sum_j ||x_i - x_j||^2, gamma largest."""
    x = _stack(honest).to(torch.float64)
    mu, dev = x.mean(0), _deviation(x, deviation)
    bound = (torch.cdist(x, x) ** 2).sum(1).max()

    def ok(g: float) -> bool:
        return bool((torch.linalg.vector_norm(x - (mu + g * dev), dim=1) ** 2).sum() <= bound)

    return (mu + _search_gamma(ok, gamma_init, steps) * dev).to(torch.float32)


def mimic(honest: Honest, *, target: int = 0) -> torch.Tensor:
    """A copy of honest update ``target``: over-weights one peer (hurts non-IID training)."""
    x = _stack(honest)
    if not 0 <= target < x.shape[0]:
        raise AttackError(f"mimic: target = {target} with {x.shape[0]} honest updates")
    return x[target].clone()


def scaled_replacement(honest: Honest, *, own: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Model replacement: scale * own - (scale - 1) * honest mean, scale default N + 1.

    Under a plain mean over N + 1 peers this makes the aggregate equal ``own``.
    """
    x = _stack(honest)
    s = float(x.shape[0] + 1) if scale is None else float(scale)
    return s * _vec(own, x.shape[1], "own") - (s - 1.0) * x.mean(0)


def nan_inf(honest: Honest, *, kind: str = "nan", fraction: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A vector holding NaN (``kind='nan'``), +Inf, -Inf or a mix at ``fraction`` of its coordinates."""
    x = _stack(honest)
    values = {"nan": [math.nan], "inf": [math.inf], "-inf": [-math.inf], "mixed": [math.nan, math.inf, -math.inf]}
    if kind not in values or not 0.0 < fraction <= 1.0:
        raise AttackError(f"nan_inf: kind = {kind!r}, fraction = {fraction}; kinds {sorted(values)}, 0 < fraction <= 1")
    d = x.shape[1]
    gen = torch.Generator().manual_seed(int(seed))
    out = x.mean(0).clone()
    count = max(1, round(fraction * d))
    idx = torch.randperm(d, generator=gen)[:count]
    pool = torch.tensor(values[kind], dtype=torch.float32)
    out[idx] = pool[torch.arange(count) % pool.shape[0]]
    return out


def label_flip(y: torch.Tensor | np.ndarray, n_classes: int) -> torch.Tensor:
    """Data poisoning: label c becomes n_classes - 1 - c."""
    t = torch.as_tensor(y)
    if t.dtype.is_floating_point:
        raise AttackError(f"label_flip: labels have dtype {t.dtype}, expected integers")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n_classes):
        raise AttackError(f"label_flip: labels outside [0, {n_classes})")
    return (n_classes - 1) - t


ATTACKS: dict[str, Callable[..., torch.Tensor]] = {
    "sign_flip": sign_flip,
    "gaussian_noise": gaussian_noise,
    "alie": alie,
    "ipm": ipm,
    "min_max": min_max,
    "min_sum": min_sum,
    "mimic": mimic,
    "scaled_replacement": scaled_replacement,
    "nan_inf": nan_inf,
}


def make_byzantine(
    name: str, honest_updates: Honest, own_update: torch.Tensor | None = None, *, seed: int = 0, **opts: Any
) -> torch.Tensor:
    """Run attack ``name`` with ``own_update`` and ``seed`` passed where the attack uses them.

    Unknown option names raise :class:`AttackError` (a typo must not silently
    weaken a simulated attack).
    """
    if name not in ATTACKS:
        raise AttackError(f"unknown attack {name!r}; choose from {sorted(ATTACKS)}")
    fn = ATTACKS[name]
    params = inspect.signature(fn).parameters
    kwargs = dict(opts)
    if "own" in params and own_update is not None:
        kwargs["own"] = own_update
    if "seed" in params:
        kwargs["seed"] = seed
    accepted = list(params)[1:]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise AttackError(f"attack {name!r} takes no option(s) {unknown}; it takes {accepted}")
    missing = [p for p in accepted if params[p].default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        raise AttackError(f"attack {name!r} needs {missing} (own_update for 'own')")
    return fn(honest_updates, **kwargs)
