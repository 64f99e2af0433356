"""peer.attacks: each attack against its defining property, seeding, and how the
robust rules of peer.aggregate fare against them."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
import torch

from peer import aggregate as A
from peer import attacks as T
from peer.errors import AggregationError


@pytest.fixture
def honest() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(8, 32, generator=gen) * 0.1 + 1.0  # honest updates agree: mean ~ +1


def test_sign_flip_ipm_and_mimic(honest: torch.Tensor) -> None:
    mu = honest.mean(0)
    assert torch.allclose(T.sign_flip(honest), -mu)
    own = torch.ones(32)
    assert torch.equal(T.sign_flip(honest, own=own, scale=3.0), -3.0 * own)
    assert torch.allclose(T.ipm(honest, epsilon=0.5), -0.5 * mu)
    assert torch.equal(T.mimic(list(honest.numpy()), target=3), honest[3])


def test_gaussian_noise_is_seeded(honest: torch.Tensor) -> None:
    a = T.gaussian_noise(honest, std=2.0, seed=5)
    assert torch.equal(a, T.gaussian_noise(honest, std=2.0, seed=5))
    assert not torch.equal(a, T.gaussian_noise(honest, std=2.0, seed=6))
    assert 1.0 < float(a.std()) < 3.0


def test_alie_uses_z_max(honest: torch.Tensor) -> None:
    f, n = 3, 11
    s = n // 2 + 1 - f
    z = NormalDist().inv_cdf((n - s) / n)
    expected = honest.mean(0) - z * honest.std(0, unbiased=False)
    assert torch.allclose(T.alie(honest, f=f), expected)


@pytest.mark.parametrize("deviation", ["std", "unit", "sign"])
def test_min_max_and_min_sum_sit_on_their_bounds(honest: torch.Tensor, deviation: str) -> None:
    x = honest.double()
    mal = T.min_max(honest, deviation=deviation).double()
    diameter = torch.cdist(x, x).max()
    reach = torch.linalg.vector_norm(x - mal, dim=1).max()
    assert reach <= diameter * (1 + 1e-6) and reach >= diameter * 0.99  # the largest gamma
    mal = T.min_sum(honest, deviation=deviation).double()
    bound = (torch.cdist(x, x) ** 2).sum(1).max()
    total = (torch.linalg.vector_norm(x - mal, dim=1) ** 2).sum()
    assert total <= bound * (1 + 1e-6) and total >= bound * 0.99


def test_scaled_replacement_takes_over_a_plain_mean(honest: torch.Tensor) -> None:
    target = torch.full((32,), -5.0)
    byz = T.scaled_replacement(honest, own=target)
    agg = A.mean(torch.cat([honest, byz[None]]))
    assert torch.allclose(agg, target, atol=1e-4)


@pytest.mark.parametrize("kind", ["nan", "inf", "-inf", "mixed"])
def test_nan_inf_is_rejected_by_aggregation(honest: torch.Tensor, kind: str) -> None:
    byz = T.nan_inf(honest, kind=kind, fraction=0.25, seed=1)
    assert int((~torch.isfinite(byz)).sum()) == 8
    with pytest.raises(AggregationError, match="update 8"):
        A.aggregate(torch.cat([honest, byz[None]]))


def test_label_flip() -> None:
    y = torch.tensor([0, 1, 2, 9])
    assert label_flip_list(y) == [9, 8, 7, 0]
    with pytest.raises(T.AttackError, match="outside"):
        T.label_flip(torch.tensor([10]), 10)


def label_flip_list(y: torch.Tensor) -> list[int]:
    return T.label_flip(y, 10).tolist()


def test_make_byzantine_dispatches_and_checks_options(honest: torch.Tensor) -> None:
    assert set(T.ATTACKS) == {
        "sign_flip", "gaussian_noise", "alie", "ipm", "min_max", "min_sum", "mimic", "scaled_replacement", "nan_inf",
    }
    own = torch.zeros(32)
    for name in T.ATTACKS:
        opts = {"f": 2} if name == "alie" else {}
        out = T.make_byzantine(name, honest, own, seed=3, **opts)
        assert out.shape == (32,) and out.dtype == torch.float32, name
    assert torch.equal(T.make_byzantine("gaussian_noise", honest, seed=3), T.gaussian_noise(honest, seed=3))
    with pytest.raises(T.AttackError, match="epsilonn"):
        T.make_byzantine("ipm", honest, epsilonn=0.1)
    with pytest.raises(T.AttackError, match="own"):
        T.make_byzantine("scaled_replacement", honest)
    with pytest.raises(T.AttackError, match="unknown attack"):
        T.make_byzantine("teleport", honest)


@pytest.mark.parametrize("attack", ["sign_flip", "alie", "ipm", "min_max", "min_sum", "gaussian_noise"])
@pytest.mark.parametrize("rule", ["median", "trimmed_mean", "krum", "geometric_median"])
def test_robust_rules_stay_near_honest_mean_under_attack(honest: torch.Tensor, attack: str, rule: str) -> None:
    f = 3
    opts = {"f": f} if attack == "alie" else {}
    if attack == "sign_flip":
        opts = {"scale": 100.0}
    byz = T.make_byzantine(attack, honest, seed=0, **opts)
    x = torch.cat([honest, byz[None].expand(f, -1)])
    out = A.aggregate(x, rule=rule, f=f)
    mu = honest.mean(0)
    spread = float(torch.linalg.vector_norm(honest - mu, dim=1).max())
    assert float(torch.linalg.vector_norm(out - mu)) <= 2.0 * spread, (attack, rule)
    # ...whereas the plain mean is dragged away by the scaled sign flip
    if attack == "sign_flip":
        assert float(torch.linalg.vector_norm(A.mean(x) - mu)) > 10 * spread
    assert math.isfinite(float(out.sum()))
