"""Statistics on per-example scores (scipy does the work)."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(scores, seed: int, confidence: float = 0.95, n_resamples: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean score."""
    from scipy.stats import bootstrap

    x = np.asarray(scores, dtype=float)
    if len(x) < 2 or np.all(x == x[0]):
        # No spread to resample: scipy would warn and return nan; the interval is the point.
        return float(x.mean()), float(x.mean())
    res = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                    method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
