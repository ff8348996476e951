"""The seed's classifier: a self-organizing map of daily load shapes (MiniSom).

Each day's curve is standardised (mean 0, standard deviation 1), so the map's Euclidean
distance is a correlation distance (|a - b|^2 = 2 S (1 - r)) and the map groups days by
shape, not by level. A customer's regular behaviour is its dominant map region: the node
most of its days fall on and that node's grid neighbours; the curve of the regular
behaviour is the mean of the customer's days in the region. The correlation of each day
with it (a one-day window, as in the SecureCloud paper) exposes days that break the pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


def hourly(energy: F64) -> F64:
    """Curves at hourly resolution when the slots divide into 24 (15-min appliance spikes
    make single slots noisy; the shape of a day lives in its hours); else unchanged."""
    slots = energy.shape[-1]
    if slots <= 24 or slots % 24:
        return energy
    hours: F64 = energy.reshape(*energy.shape[:-1], 24, slots // 24).sum(-1)
    return hours


def zcurves(energy: F64) -> tuple[F64, B]:
    """Standardised curves over the last axis, and which are usable (complete, not flat)."""
    mean = energy.mean(axis=-1, keepdims=True)
    centred = energy - mean
    sd = np.sqrt((centred**2).mean(axis=-1, keepdims=True))
    usable = (sd[..., 0] > 1e-9) & ~np.isnan(sd[..., 0])
    z = np.divide(centred, sd, out=np.zeros_like(centred), where=usable[..., None])
    return np.nan_to_num(z), usable


@dataclass(frozen=True)
class ShapeMap:
    """A trained map: codebook (nodes, slots) of standardised shapes on a rows x cols grid."""

    weights: F64
    rows: int
    cols: int
    typical: F64  # (slots,) the standardised mean of the training days: the usual shape

    @property
    def nodes(self) -> int:
        """Nodes on the map."""
        return self.rows * self.cols

    def neighbours(self) -> B:
        """(nodes, nodes): True where two nodes are at most one grid step apart (8-connected)."""
        r, c = np.divmod(np.arange(self.nodes), self.cols)
        near: B = (np.abs(r[:, None] - r[None, :]) <= 1) & (np.abs(c[:, None] - c[None, :]) <= 1)
        return near

    def bmu(self, z: F64) -> I64:
        """Best-matching node of each curve (..., slots), by squared distance."""
        flat = z.reshape(-1, z.shape[-1])
        w = self.weights
        # |x - w|^2 = |x|^2 - 2 x.w + |w|^2; |x|^2 is the same for every node.
        score = flat @ w.T
        score -= 0.5 * (w * w).sum(1)[None, :]
        best: I64 = np.argmax(score, axis=1).astype(np.int64)
        return best.reshape(z.shape[:-1])

    def umatrix(self) -> F64:
        """Mean distance of each node to its grid neighbours (rows, cols): the U-matrix."""
        near = self.neighbours() & ~np.eye(self.nodes, dtype=bool)
        d = np.sqrt(((self.weights[:, None, :] - self.weights[None, :, :]) ** 2).sum(-1))
        mean: F64 = (d * near).sum(1) / near.sum(1)
        return mean.reshape(self.rows, self.cols)


def train_map(sample: F64, *, rows: int, cols: int, iterations: int, seed: int) -> ShapeMap:
    """Train a map on standardised curves (N, slots) with MiniSom (deterministic for a seed)."""
    from minisom import MiniSom

    som = MiniSom(
        rows,
        cols,
        sample.shape[1],
        sigma=max(rows, cols) / 4,
        learning_rate=0.5,
        random_seed=seed,
    )
    som.pca_weights_init(sample)
    som.train(sample, iterations, random_order=True)
    weights = np.asarray(som.get_weights(), np.float64).reshape(rows * cols, sample.shape[1])
    typical, _ = zcurves(sample.mean(0))
    return ShapeMap(weights, rows, cols, typical)


@dataclass(frozen=True)
class Regular:
    """Each customer's regular behaviour and how each of its days relates to it."""

    node: I64  # (C,) dominant node
    curve: F64  # (C, slots) standardised regular curve
    in_region: B  # (C, D) day falls in the dominant region
    bmu: I64  # (C, D) best-matching node, -1 for unusable days
    corr: F64  # (C, D) correlation with the regular curve (0 for flat days, NaN missing)
    corr_typical: F64  # (C, D) correlation with the population's usual shape
    corr_reversed: F64  # (C, D) correlation with the population's usual shape reversed


def regular_behaviour(smap: ShapeMap, z: F64, usable: B, missing: B) -> Regular:
    """Dominant region, regular curve and per-day correlations for curves z (C, D, slots)."""
    customers, _, slots = z.shape
    bmu = np.where(usable, smap.bmu(z), -1)
    counts = np.zeros((customers, smap.nodes + 1), np.int64)
    np.add.at(counts, (np.arange(customers)[:, None], bmu + 1), 1)
    node = np.argmax(counts[:, 1:], axis=1)
    near = np.vstack([smap.neighbours(), np.zeros((1, smap.nodes), bool)])
    in_region = near[np.where(bmu >= 0, bmu, smap.nodes), node[:, None]] & usable
    # Customers without a usable day keep the node's own shape as their regular curve.
    weight = in_region[..., None].astype(np.float64)
    summed = (z * weight).sum(1)
    fallback = smap.weights[node]
    curve, _ = zcurves(np.where(in_region.any(1)[:, None], summed, fallback))
    corr = np.einsum("cds,cs->cd", z, curve) / slots
    corr_typical = z @ smap.typical / slots
    corr_reversed = z @ smap.typical[::-1] / slots
    for series in (corr, corr_typical, corr_reversed):
        series[missing] = np.nan
    return Regular(node, curve, in_region, bmu, corr, corr_typical, corr_reversed)
