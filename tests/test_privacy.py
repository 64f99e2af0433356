"""peer.privacy: clipping to exactly C, Gaussian noise of std sigma*C, and the
accountant against Opacus's published figure and the Gaussian mechanism's closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from peer.errors import ConfigError
from peer.privacy import DPConfig, PrivacyAccountant, clip_and_noise, clip_update


def test_clipped_norm_is_exactly_c() -> None:
    rng = np.random.default_rng(0)
    cfg = DPConfig(clip=0.7, noise_multiplier=0.0)
    for scale in (1.0, 1e3, 1e-1):
        u = (rng.normal(size=10_000) * scale).astype(np.float32)
        out = clip_and_noise(u, cfg, generator=rng)
        assert np.linalg.norm(out.astype(np.float64)) == pytest.approx(0.7, rel=1e-6)
        # direction is kept
        cos = float(out.astype(np.float64) @ u / (np.linalg.norm(out) * np.linalg.norm(u)))
        assert cos == pytest.approx(1.0, abs=1e-6)


def test_small_update_is_not_scaled_up() -> None:
    u = np.full(100, 0.01, dtype=np.float32)  # norm 0.1
    np.testing.assert_array_equal(clip_update(u, 1.0), u)


def test_noise_std_matches_theory_over_many_draws() -> None:
    cfg = DPConfig(clip=0.5, noise_multiplier=1.3, noise_seed=1)
    zero = np.zeros(2_000, dtype=np.float32)
    draws = np.stack([clip_and_noise(zero, cfg, generator=cfg.generator(i)) for i in range(200)])
    theory = 1.3 * 0.5
    assert abs(draws.std() / theory - 1) < 0.15
    assert abs(draws.mean()) < 0.01 * theory  # std of this mean is theory/632
    # each coordinate's spread across draws too (not one shared offset)
    per_coord = draws.std(axis=0)
    assert abs(np.median(per_coord) / theory - 1) < 0.15
    # noise is added after clipping: a huge update still ends near norm C plus noise
    big = np.full(2_000, 100.0, dtype=np.float32)
    noisy = clip_and_noise(big, cfg, generator=cfg.generator(999))
    expected_norm = math.sqrt(0.5**2 + 2_000 * theory**2)
    assert np.linalg.norm(noisy) == pytest.approx(expected_norm, rel=0.05)


def test_noise_is_secret_unless_seeded() -> None:
    u = np.zeros(50, dtype=np.float32)
    secret = DPConfig(noise_multiplier=1.0)
    a = clip_and_noise(u, secret, generator=secret.generator(1, 2))
    b = clip_and_noise(u, secret, generator=secret.generator(1, 2))
    assert not np.array_equal(a, b)
    seeded = DPConfig(noise_multiplier=1.0, noise_seed=3)
    c = clip_and_noise(u, seeded, generator=seeded.generator(1, 2))
    d = clip_and_noise(u, seeded, generator=seeded.generator(1, 2))
    assert c.tobytes() == d.tobytes() and c.dtype == np.float32


def test_accountant_reproduces_opacus_published_epsilon() -> None:
    """Opacus's RDP test figure: sigma 1.5, sampling rate 0.04, 2250 steps, delta 1e-5."""
    acct = PrivacyAccountant(delta=1e-5)
    cfg = DPConfig(noise_multiplier=1.5, sample_rate=0.04, delta=1e-5)
    acct.step(cfg, rounds=2000)
    acct.step(cfg, rounds=250)
    assert acct.rounds == 2250 and len(acct.history) == 1
    assert acct.epsilon() == pytest.approx(7.3291, abs=5e-5)
    assert acct.epsilon() == pytest.approx(7.32911117143, abs=1e-8)


def test_accountant_matches_gaussian_closed_form() -> None:
    """Without subsampling, T rounds of the Gaussian mechanism have RDP T*a/(2 sigma^2)
    (Mironov 2017, Prop. 7); convert with Balle et al. 2020, Thm. 21, over Opacus's orders."""
    sigma, rounds, delta = 2.0, 30, 1e-5
    orders = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), dtype=float)
    rdp = rounds * orders / (2 * sigma**2)
    eps = rdp + np.log1p(-1 / orders) - (np.log(delta) + np.log(orders)) / (orders - 1)
    acct = PrivacyAccountant(delta=delta)
    acct.step(DPConfig(noise_multiplier=sigma), rounds=rounds)
    assert acct.epsilon() == pytest.approx(float(eps.min()), rel=1e-9)


def test_accountant_composes_and_reports_per_round() -> None:
    cfg = DPConfig(noise_multiplier=1.1, delta=1e-5)
    acct = PrivacyAccountant(delta=1e-5)
    assert acct.epsilon() == 0.0
    totals = []
    for _ in range(5):
        acct.step(cfg)
        totals.append(acct.epsilon())
    assert all(b > a for a, b in zip(totals, totals[1:], strict=False))
    one = acct.round_epsilon(cfg)
    assert one == pytest.approx(totals[0])
    assert totals[-1] < 5 * one  # RDP composition beats adding epsilons
    restored = PrivacyAccountant.from_dict(acct.to_dict())
    assert restored.epsilon() == totals[-1] and restored.rounds == 5
    acct.step(DPConfig(noise_multiplier=2.0))
    assert len(acct.history) == 2 and acct.epsilon() > totals[-1]


def test_prv_accountant_is_tighter_than_rdp() -> None:
    cfg = DPConfig(noise_multiplier=1.0, sample_rate=0.1, accountant="prv")
    rdp, prv = PrivacyAccountant(delta=1e-5), PrivacyAccountant(delta=1e-5, kind="prv")
    rdp.step(cfg, rounds=100)
    prv.step(cfg, rounds=100)
    assert 0.5 * rdp.epsilon() < prv.epsilon() <= rdp.epsilon()


def test_no_noise_means_no_privacy() -> None:
    acct = PrivacyAccountant(delta=1e-5)
    acct.step(DPConfig(noise_multiplier=0.0))
    assert acct.epsilon() == math.inf


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(clip=0.0), "dp.clip"),
        (dict(noise_multiplier=-1.0), "dp.noise_multiplier"),
        (dict(delta=1.0), "dp.delta"),
        (dict(sample_rate=0.0), "dp.sample_rate"),
        (dict(accountant="gdp"), "'gdp'"),
        (dict(noise_seed=-3), "noise_seed"),
    ],
)
def test_dp_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DPConfig(**kwargs)


def test_clip_refuses_bad_updates() -> None:
    with pytest.raises(ConfigError, match="NaN"):
        clip_update(np.array([np.nan], dtype=np.float32), 1.0)
    with pytest.raises(ConfigError, match="float64"):
        clip_update(np.zeros(3), 1.0)
