"""Means over images with percentile bootstrap CIs, vectorised over many quantities at once and NaN-aware."""
from __future__ import annotations

import numpy as np

#: Resamples drawn per matrix product; bounds the memory of the resample counts to ``batch * images`` floats.
RESAMPLE_BATCH = 200


def bootstrap_mean(values: np.ndarray, n_bootstrap: int = 1000, confidence: float = 0.95,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over the last axis (images) of ``values`` (..., N) with a percentile bootstrap CI over images.

    Every quantity is resampled with the same image draws. NaN entries are missing: each mean is over the finite
    entries of its resample. With fewer than 2 images or ``n_bootstrap == 0`` the CIs are NaN.

    Returns
    -------
    mean, ci_low, ci_high : ndarray (...)
    """
    values = np.asarray(values, dtype=np.float64)
    shape, count = values.shape[:-1], values.shape[-1]
    flat = values.reshape(-1, count)
    finite = np.isfinite(flat)
    filled = np.where(finite, flat, 0.0)
    present = finite.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(-1) / present.sum(-1)
    low = np.full(len(flat), np.nan)
    high = np.full(len(flat), np.nan)
    if count >= 2 and n_bootstrap >= 1 and len(flat):
        rng = np.random.default_rng((int(seed), 5))
        estimates = np.empty((n_bootstrap, len(flat)))
        for start in range(0, n_bootstrap, RESAMPLE_BATCH):
            size = min(RESAMPLE_BATCH, n_bootstrap - start)
            draws = rng.integers(0, count, size=(size, count)) + count * np.arange(size)[:, None]
            weights = np.bincount(draws.ravel(), minlength=size * count).reshape(size, count).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                estimates[start:start + size] = (weights @ filled.T) / (weights @ present.T)
        alpha = (1.0 - confidence) / 2
        valid = np.isfinite(estimates).any(0)
        if valid.any():
            low[valid], high[valid] = np.nanquantile(estimates[:, valid], [alpha, 1.0 - alpha], axis=0)
    return mean.reshape(shape), low.reshape(shape), high.reshape(shape)
