"""OpenDP's discrete Laplace: the epsilon it reports, unbiased noise of the right spread."""

from __future__ import annotations

import statistics

import pytest

from meterseal.dissemination.privacy import DifferentialPrivacy, LaplaceNoise, PrivacyBudget


def test_epsilon_per_release_is_what_opendp_maps() -> None:
    noise = LaplaceNoise(0.5, 1000)
    assert noise.scale == 2000
    assert noise.epsilon == pytest.approx(0.5)
    privacy = DifferentialPrivacy.laplace(epsilon=1.0, clamp_wh=500, total=3.0)
    assert privacy.epsilon == pytest.approx(1.0)
    assert privacy.budget.total == 3.0


def test_noise_is_unbiased_with_the_laplace_spread() -> None:
    noise = LaplaceNoise(1.0, 10)  # scale 10: variance about 2 * 10^2
    samples = [noise(1_000) - 1_000 for _ in range(4_000)]
    assert all(isinstance(s, int) for s in samples)
    assert abs(statistics.fmean(samples)) < 1.5
    assert 150 < statistics.pvariance(samples) < 260


def test_budget_charges_each_frame_once() -> None:
    budget = PrivacyBudget(1.0)
    assert budget.charge(0, 0.4)
    assert budget.charge(0, 0.4)
    assert budget.charge(3600, 0.4)
    assert not budget.charge(7200, 0.4)
    assert budget.spent == pytest.approx(0.8)


@pytest.mark.parametrize(("epsilon", "sensitivity"), [(0, 1), (-1, 1), (1, 0)])
def test_nonsense_parameters_are_refused(epsilon: float, sensitivity: int) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        LaplaceNoise(epsilon, sensitivity)
