"""The offline demo as a study: the demo zoo on its held-out synthetic faces, sized for two CPU cores.

``benchmarks/suites/demo.toml`` declares the same study (a test checks that they agree), so
``lrp-faces run benchmarks/suites/demo.toml`` and ``lrp-faces demo`` compute the same results.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

from .study import Study

DEMO = {
    "study": {"name": "demo"},
    "zoo": {"demo": "default"},
    "dataset": {"kind": "demo"},
    "attribution": {"method": "epsilon_gamma_box", "batch_size": 16},
    "masking": {"fractions": [0.0, 0.05, 0.1, 0.2, 0.3, 0.5], "order": "morf", "fill": "mean",
                "n_bootstrap": 1000, "n_permutations": 1000},
    "analysis": {
        "similarity": {"metric": "spearman", "n_bootstrap": 1000},
        "regions": {"n_bootstrap": 1000},
        "methods": {"models": ["objects/gender/0", "objects/identity/0", "faces/gender/0", "faces/identity/0"],
                    "max_images": 40, "fractions": [0.0, 0.1, 0.2, 0.3, 0.5], "n_bootstrap": 1000,
                    "method_params": {"smoothgrad": {"n_samples": 8}, "integrated_gradients": {"steps": 16}}},
        "rsa": {"human_rdm": "synthetic", "n_permutations": 2000, "n_bootstrap": 500},
    },
}
"""The default demo, as the document of a study file."""

QUICK = {
    "study": {"name": "demo-quick"},
    "zoo": {"demo": "quick"},
    "masking": {"fractions": [0.0, 0.1, 0.3], "max_images": 40, "n_bootstrap": 200, "n_permutations": 200},
    "analysis": {
        "similarity": {"n_bootstrap": 200},
        "regions": {"n_bootstrap": 200},
        "methods": {"models": ["objects/gender/0", "faces/identity/0"], "max_images": 16,
                    "fractions": [0.0, 0.2, 0.5], "n_bootstrap": 200,
                    "method_params": {"smoothgrad": {"n_samples": 4}, "integrated_gradients": {"steps": 8}}},
        "rsa": {"n_permutations": 500, "n_bootstrap": 200},
    },
}
"""What ``lrp-faces demo --quick`` changes: the quick zoo (one seed), fewer images, fractions and resamples."""


def _merge(base: dict, changes: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "method_params":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def demo_document(quick: bool = False, cache_dir: str | os.PathLike | None = None) -> dict:
    """The demo's study document (as parsed from TOML); ``quick`` for the CI-sized variant."""
    document = _merge(DEMO, QUICK) if quick else copy.deepcopy(DEMO)
    if cache_dir is not None:
        document["zoo"]["cache_dir"] = str(Path(cache_dir).expanduser().resolve())
    return document


def demo_study(quick: bool = False, cache_dir: str | os.PathLike | None = None) -> Study:
    """The demo :class:`Study`: 2 pretrainings x 2 tasks x 3 seeds (1 seed if ``quick``), 80 faces of 64 px."""
    return Study.from_dict(demo_document(quick, cache_dir), base=Path.cwd(), name="lrp-faces demo")
