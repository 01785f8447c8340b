"""Is the fine-tuning update low-rank? The SVD of Delta W = W_finetuned - W_0, and LoRA's subspace in it.

LoRA (Hu et al. 2021) rests on a hypothesis: the change a fine-tuning makes to a weight matrix
has a low "intrinsic rank". We test it on our own models:

- energy share of the top k directions:  sum_{i<=k} sigma_i^2 / sum_i sigma_i^2  (= ||Delta W_k||_F^2 /
  ||Delta W||_F^2, Delta W_k the best rank-k approximation; Eckart-Young). A random Gaussian matrix of
  the same shape is the baseline: its energy is spread evenly, so its top-k share is small.
- subspace overlap (the LoRA paper's section 7 similarity, on output directions): with U_full_k the top
  k left singular vectors of the full update and U_lora the r left singular vectors of LoRA's update
  s B A,   phi = ||U_full_k^T U_lora||_F^2 / min(k, r)   in [0, 1]: 1 when one subspace contains the
  other, k*r/d / min(k, r) expected for unrelated random subspaces of R^d.

The SVDs run through the array module's ``linalg.svd`` on whatever device the arrays are on;
the small results are brought to the host for reporting.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from minilora import backend

KS = (1, 2, 4, 8, 16)


def singular_values(delta: Any) -> np.ndarray:
    """The singular values of a 2-D array, largest first, as a host float64 array."""
    if delta.ndim != 2:
        raise ValueError(f"singular_values: expected a 2-D weight update, got shape {tuple(delta.shape)}")
    xp = backend.get_array_module(delta)
    s = xp.linalg.svd(delta.astype(xp.float64), compute_uv=False)
    return backend.to_host(s)  # host: a few hundred numbers for the report


def energy_shares(s: np.ndarray, ks: Sequence[int] = KS) -> dict[int, float]:
    """{k: share of sum(s^2) held by the k largest singular values} (1.0 once k >= rank; 0 for a zero update)."""
    energy = np.cumsum(np.sort(s)[::-1] ** 2)
    total = energy[-1] if len(energy) else 0.0
    out = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"energy_shares: k must be >= 1, got {k}")
        out[k] = 0.0 if total == 0 else (energy[min(k, len(energy)) - 1] / total).tolist()  # a Python float
    return out


def left_subspace(delta: Any, k: int) -> np.ndarray:
    """An orthonormal basis (d, k') of the top-k left singular directions, k' = min(k, rank); host float64."""
    xp = backend.get_array_module(delta)
    eps = np.finfo(delta.dtype if delta.dtype.kind == "f" else np.float64).eps  # the rounding of the input's dtype
    u, s, _ = xp.linalg.svd(delta.astype(xp.float64), full_matrices=False)
    u, s = backend.to_host(u), backend.to_host(s)  # host: reporting-size arrays
    # numerical rank as np.linalg.matrix_rank: a float32 B @ A of rank r has other singular values at rounding level
    rank = int((s > s[0] * max(delta.shape) * eps).sum()) if len(s) and s[0] > 0 else 0
    return u[:, : min(k, rank)]


def subspace_overlap(u_a: np.ndarray, u_b: np.ndarray) -> float:
    """||U_a^T U_b||_F^2 / min(k_a, k_b) for orthonormal bases U_a (d, k_a), U_b (d, k_b); in [0, 1]."""
    if u_a.ndim != 2 or u_b.ndim != 2 or u_a.shape[0] != u_b.shape[0]:
        raise ValueError(f"subspace_overlap: bases must be (d, k) with the same d, got {u_a.shape} and {u_b.shape}")
    k = min(u_a.shape[1], u_b.shape[1])
    if k == 0:
        return 0.0
    m = u_a.T @ u_b
    return ((m * m).sum() / k).tolist()  # host arrays: a Python float


def random_overlap(d: int, k: int, r: int) -> float:
    """The expected overlap of a fixed k-dim and a random r-dim subspace of R^d: (k r / d) / min(k, r)."""
    return min(k, d) * min(r, d) / d / max(min(k, r, d), 1)


def random_energy_shares(shape: tuple[int, int], ks: Sequence[int] = KS, seed: int = 0) -> dict[int, float]:
    """energy_shares of a Gaussian random matrix of ``shape`` (the no-structure baseline)."""
    g = np.random.default_rng(seed).standard_normal(shape)  # host
    return energy_shares(np.linalg.svd(g, compute_uv=False), ks)


@dataclasses.dataclass
class MatrixReport:
    """What the analysis found for one weight matrix."""

    name: str
    shape: tuple[int, int]
    delta_norm: float  # ||Delta W||_F
    relative_change: float  # ||Delta W||_F / ||W_0||_F
    singular_values: list[float]
    shares: dict[int, float]
    random_shares: dict[int, float]
    overlap: dict[int, float] | None = None  # k -> phi(full top-k, LoRA's r directions)
    random_overlap: dict[int, float] | None = None
    lora_rank: int | None = None

    @property
    def rank90(self) -> int:
        """How many directions hold 90% of the update's energy."""
        energy = np.cumsum(np.asarray(self.singular_values) ** 2)  # host: a list of floats
        return int(np.searchsorted(energy, 0.9 * energy[-1]) + 1) if len(energy) and energy[-1] > 0 else 0


def analyze_updates(
    base: Mapping[str, Any],
    finetuned: Mapping[str, Any],
    lora_deltas: Mapping[str, Any] | None = None,
    ks: Sequence[int] = KS,
) -> list[MatrixReport]:
    """One MatrixReport per 2-D weight present in both ``base`` and ``finetuned`` (arrays by name).

    ``lora_deltas`` maps weight names to LoRA's update s B A for the layers LoRA adapted.
    """
    reports = []
    for name, w0 in base.items():
        w1 = finetuned.get(name)
        if w1 is None or w0.ndim != 2 or tuple(w1.shape) != tuple(w0.shape):
            continue
        delta = w1.astype("float64") - w0.astype("float64")
        s = singular_values(delta)
        xp = backend.get_array_module(delta)
        norms = backend.to_host(xp.stack([(delta * delta).sum(), (w0.astype("float64") ** 2).sum()]))  # host
        shape = (int(w0.shape[0]), int(w0.shape[1]))
        delta_norm, w0_norm = np.sqrt(norms).tolist()
        rep = MatrixReport(name, shape, delta_norm, delta_norm / max(w0_norm, 1e-300), s.tolist(),
                           energy_shares(s, ks), random_energy_shares(shape, ks))
        if lora_deltas is not None and name in lora_deltas:
            u_lora = left_subspace(lora_deltas[name], min(shape))
            rep.lora_rank = u_lora.shape[1]
            u_full = left_subspace(delta, max(ks))
            rep.overlap = {k: subspace_overlap(u_full[:, :k], u_lora) for k in ks}
            rep.random_overlap = {k: random_overlap(shape[0], k, max(rep.lora_rank, 1)) for k in ks}
        reports.append(rep)
    return reports


def mean_share(reports: Sequence[MatrixReport], k: int, random: bool = False) -> float:
    vals = [(r.random_shares if random else r.shares)[k] for r in reports]
    return sum(vals) / len(vals) if vals else math.nan


def verdict(reports: Sequence[MatrixReport], k: int = 8) -> str:
    """What the numbers say, in plain words."""
    if not reports:
        return "no weight matrix changed: nothing to analyse"
    share, base = mean_share(reports, k), mean_share(reports, k, random=True)
    words = [f"the top {k} directions hold {100 * share:.0f}% of the full update's energy on average over "
             f"{len(reports)} matrices (a random matrix of the same shapes: {100 * base:.0f}%)"]
    if share >= 0.5 and share >= 2 * base:
        words.append("the low-rank hypothesis holds here")
    elif share >= 1.5 * base:
        words.append("the update is more concentrated than noise but spread over many directions: "
                     "the low-rank hypothesis holds only partly here")
    else:
        words.append("the update is about as spread out as noise: the low-rank hypothesis does not hold here")
    with_lora = [r for r in reports if r.overlap]
    if with_lora:
        kk = min(k, max(r.lora_rank or 1 for r in with_lora))
        phi = sum(r.overlap[kk] for r in with_lora) / len(with_lora)
        rnd = sum(r.random_overlap[kk] for r in with_lora) / len(with_lora)
        words.append(f"LoRA's update shares {100 * phi:.0f}% of its subspace with the top {kk} directions of the "
                     f"full update on the {len(with_lora)} layers it adapted (unrelated random subspaces: "
                     f"{100 * rnd:.0f}%)")
    return "; ".join(words) + "."
