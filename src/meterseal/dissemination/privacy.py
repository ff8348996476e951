"""Differential privacy for LOW releases: OpenDP's discrete Laplace and a privacy budget.

A regional release sums each meter's energy in the frame clamped to `clamp_wh`, so adding
or removing one meter moves the sum by at most `clamp_wh` (the sensitivity). OpenDP's
discrete Laplace mechanism with scale `clamp_wh / epsilon` then makes each release
epsilon-DP, and OpenDP's own privacy map states that epsilon (kept on every release).
Regions of one frame hold disjoint meters (parallel composition), so a frame costs epsilon
once however many regions it releases; frames add up (sequential composition) until the
budget is spent, and from then on LOW releases are withheld rather than published.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Noise = Callable[[int], int]


class LaplaceNoise:
    """OpenDP's discrete Laplace on integers, calibrated to `epsilon` for `sensitivity`."""

    def __init__(self, epsilon: float, sensitivity: int) -> None:
        if not epsilon > 0 or sensitivity < 1:
            raise ValueError("epsilon must be positive and sensitivity at least 1")
        import opendp.prelude as dp

        dp.enable_features("contrib")
        self.scale = sensitivity / epsilon
        space = dp.atom_domain(T=int), dp.absolute_distance(T=int)
        self._measurement: Any = space >> dp.m.then_laplace(scale=self.scale)
        # What OpenDP's privacy map says one release costs (the documented epsilon).
        self.epsilon: float = float(self._measurement.map(d_in=sensitivity))
        self.sensitivity = sensitivity

    def __call__(self, value: int) -> int:
        """`value` plus discrete Laplace noise."""
        noisy: int = self._measurement(int(value))
        return noisy


@dataclass
class PrivacyBudget:
    """Total epsilon for the LOW stream; each frame is charged once (parallel over regions)."""

    total: float
    spent: float = 0.0
    charged: dict[int, float] = field(default_factory=dict)

    def charge(self, frame_start: int, epsilon: float) -> bool:
        """Whether a release in this frame may go out, charging the frame on first use."""
        if frame_start in self.charged:
            return True
        if self.spent + epsilon > self.total + 1e-9:
            return False
        self.charged[frame_start] = epsilon
        self.spent += epsilon
        return True

    @property
    def remaining(self) -> float:
        """Epsilon left."""
        return max(0.0, self.total - self.spent)


@dataclass
class DifferentialPrivacy:
    """How LOW releases are noised: the mechanism, its epsilon, the clamp and the budget."""

    noise: Noise
    epsilon: float
    clamp_wh: int
    budget: PrivacyBudget

    @classmethod
    def laplace(cls, epsilon: float, clamp_wh: int, total: float) -> DifferentialPrivacy:
        """OpenDP discrete Laplace at `epsilon` per frame, within a `total` budget."""
        mechanism = LaplaceNoise(epsilon, clamp_wh)
        return cls(mechanism, mechanism.epsilon, clamp_wh, PrivacyBudget(total))
