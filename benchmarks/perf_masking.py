"""Masking curves: ours vs Quantus 0.6, vs the forward-pass limit, and ROAD imputation vs the reference approach.

Side by side in one run, on the same width-1/8 VGG-16, synthetic faces and LRP maps, MoRF order:

1. ``lrp_faces.masking.curves`` vs Quantus ``RegionPerturbation`` (8x8 patches, fill 0) and ``PixelFlipping``
   (pixels, fill 0): median seconds, ratio, and the largest difference between the curves where the protocols
   match (Quantus's "black" is the per-image minimum; we pass it as a per-image ``fill_value``).
2. ``curves`` vs the forward-pass limit: pure forward passes over the same number of inputs (N originals plus
   N x steps masked) at the best batch size.
3. ROAD imputation (``road_impute``) vs the straightforward approach of the ROAD reference code: one scipy
   ``spsolve`` per image on a system built with a Python loop over the neighbours into a ``lil_matrix``; at
   fraction 0.5 for MoRF masks of the LRP maps (pixels and 8x8 patches) and for random masks, with the largest
   difference between the two, and ours again when every mask recurs (factorisations cached).

Runs are interleaved and repeated; medians are reported. ``--threads 1`` (default) keeps timings stable on a
loaded machine (BLAS threads too, where threadpoolctl is installed); every method runs under the same setting. The
load average is printed with the ROAD section: other processes on the machine slow both sides.

    python benchmarks/perf_masking.py                       # 64 px (32 images, 20 steps), 112 px (16, 100)
    python benchmarks/perf_masking.py --repeats 3 --json results.json
    python benchmarks/perf_masking.py --road-only --repeats 7  # section 3 alone (seconds)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings

import numpy as np
import scipy.sparse as sparse
import torch
from scipy.sparse.linalg import spsolve

import lrp_faces
from lrp_faces import masking
from perf_attribution import trained_scale  # same random-weight scale as the attribution benchmark

PATCH = 8
CONFIGS = {64: (32, 20), 112: (16, 100)}  # size: (images, steps)


def setup(size: int, count: int, seed: int = 0):
    """A width-1/8 VGG-16 over identities, ``count`` synthetic faces, their labels and LRP maps."""
    identities = 8
    faces = lrp_faces.synthetic_faces(identities, count // identities, size=size, seed=seed)
    torch.manual_seed(seed)
    model = trained_scale(lrp_faces.vgg16(identities, width=1 / 8, pool_size=2, classifier_width=64), seed).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    labels = torch.as_tensor(faces.labels("identity"))
    relevance = lrp_faces.attribute(model, faces.images, target=labels)
    return model, faces.images, labels, relevance


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


# ------------------------------------------------------------------------------------------------- the methods
def ours(model, images, labels, relevance, fractions, patch, fill_value=None, batch_size=None):
    fill = "zero" if fill_value is None else "mean"
    return masking.curves(model, images, labels, relevance, fractions=fractions, order="morf", fill=fill, patch=patch,
                          fill_value=fill_value, batch_size=batch_size)


def forward_limit(model, images, total: int, batch_size: int) -> None:
    """Forward passes over ``total`` inputs in batches of ``batch_size`` (a fixed batch, reused)."""
    batch = images[torch.arange(batch_size) % len(images)]
    with torch.inference_mode():
        for start in range(0, total, batch_size):
            model(batch[:min(batch_size, total - start)])


def quantus_region(model, images, labels, relevance, steps, baseline):
    import quantus
    metric = quantus.RegionPerturbation(patch_size=PATCH, order="morf", regions_evaluation=steps,
                                        perturb_baseline=baseline, normalise=False, abs=False,
                                        disable_warnings=True, display_progressbar=False)
    return np.asarray(metric(model=model, x_batch=images.numpy(), y_batch=labels.numpy(),
                             a_batch=relevance.numpy()[:, None], device="cpu", batch_size=len(images),
                             channel_first=True, softmax=True))


def quantus_pixels(model, images, labels, relevance, features_in_step, baseline):
    import quantus
    metric = quantus.PixelFlipping(features_in_step=features_in_step, perturb_baseline=baseline, normalise=False,
                                   abs=False, disable_warnings=True, display_progressbar=False)
    return np.asarray(metric(model=model, x_batch=images.numpy(), y_batch=labels.numpy(),
                             a_batch=relevance.numpy()[:, None], device="cpu", batch_size=len(images),
                             channel_first=True, softmax=True))


def pixel_step(size: int, steps: int) -> int:
    """Quantus PixelFlipping's ``features_in_step`` must divide H * W; the divisor closest to ``steps`` steps."""
    features = 3 * size * size
    divisors = [step for step in range(1, size * size + 1) if (size * size) % step == 0]
    return min(divisors, key=lambda step: abs(-(-features // step) - steps))


# -------------------------------------------------------------------------------------------- ROAD reference
OFFSETS = ((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((0, -1), 1 / 6), \
    ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6)


def road_reference(image: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """The ROAD reference approach for one image: a Python loop over neighbours fills a lil_matrix; spsolve."""
    channels, height, width = image.shape
    flat = image.reshape(channels, -1).astype(np.float64)
    flat_hidden = hidden.reshape(-1)
    unknowns = np.flatnonzero(flat_hidden)
    count = len(unknowns)
    variable = np.full(height * width, -1)
    variable[unknowns] = np.arange(count)
    matrix = sparse.lil_matrix((count, count))
    rhs = np.zeros((count, channels))
    weight_sum = np.ones(count)
    rows, columns = unknowns // width, unknowns % width
    for (dy, dx), weight in OFFSETS:
        new_rows, new_columns = rows + dy, columns + dx
        valid = (new_rows >= 0) & (new_rows < height) & (new_columns >= 0) & (new_columns < width)
        ids = np.flatnonzero(valid)
        neighbours = new_rows[valid] * width + new_columns[valid]
        known = ~flat_hidden[neighbours]
        rhs[ids[known]] -= weight * flat[:, neighbours[known]].T
        matrix[ids[~known], variable[neighbours[~known]]] = weight
        weight_sum[~valid] -= weight
    matrix[np.arange(count), np.arange(count)] = -weight_sum
    solution = spsolve(sparse.csc_matrix(matrix), rhs)
    result = flat.copy()
    result[:, unknowns] = solution.reshape(count, channels).T
    return result.reshape(channels, height, width)


def road_reference_per_pixel(image: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """A slower straightforward reading: a Python loop over every hidden pixel and its neighbours, then spsolve."""
    channels, height, width = image.shape
    unknowns = [(y, x) for y in range(height) for x in range(width) if hidden[y, x]]
    number = {pixel: k for k, pixel in enumerate(unknowns)}
    matrix = sparse.lil_matrix((len(unknowns), len(unknowns)))
    rhs = np.zeros((len(unknowns), channels))
    for k, (y, x) in enumerate(unknowns):
        for (dy, dx), weight in OFFSETS:
            ny, nx = y + dy, x + dx
            if 0 <= ny < height and 0 <= nx < width:
                matrix[k, k] += weight
                if hidden[ny, nx]:
                    matrix[k, number[(ny, nx)]] -= weight
                else:
                    rhs[k] += weight * image[:, ny, nx]
    result = np.array(image, dtype=np.float64)
    result[:, hidden] = spsolve(sparse.csc_matrix(matrix), rhs).T
    return result


# ---------------------------------------------------------------------------------------------------- the run
def median(values):
    return statistics.median(values) if values else float("nan")


def run_size(size: int, count: int, steps: int, repeats: int, with_quantus: bool) -> dict:
    model, images, labels, relevance = setup(size, count)
    patches = (size // PATCH) ** 2
    region_fractions = [step / patches for step in range(steps + 1)]
    features_in_step = pixel_step(size, steps)
    pixel_steps = -(-3 * size * size // features_in_step)
    pixel_fractions = [min(step * features_in_step, 3 * size * size) / (3 * size * size)
                       for step in range(pixel_steps + 1)]
    total = count * (steps + 1)
    candidates = [batch for batch in (16, 32, 64, 128, 256) if batch <= total]
    calibration = {batch: median([timed(forward_limit, model, images, total, batch)[0] for _ in range(2)])
                   for batch in candidates}
    best = min(calibration, key=calibration.get)
    times = {name: [] for name in ("limit", "ours", "ours_default", "quantus_region", "ours_pixels",
                                   "limit_pixels", "quantus_pixels")}
    for _ in range(repeats):
        times["limit"].append(timed(forward_limit, model, images, total, best)[0])
        seconds, region = timed(ours, model, images, labels, relevance, region_fractions, PATCH, batch_size=best)
        times["ours"].append(seconds)
        times["ours_default"].append(timed(ours, model, images, labels, relevance, region_fractions, PATCH)[0])
        times["ours_pixels"].append(timed(ours, model, images, labels, relevance, pixel_fractions, 1,
                                          batch_size=best)[0])
        times["limit_pixels"].append(timed(forward_limit, model, images, count * (pixel_steps + 1), best)[0])
        if with_quantus:
            seconds, quantus_curve = timed(quantus_region, model, images, labels, relevance, steps, 0.0)
            times["quantus_region"].append(seconds)
            times["quantus_pixels"].append(timed(quantus_pixels, model, images, labels, relevance,
                                                 features_in_step, 0.0)[0])
    result = {"size": size, "images": count, "steps": steps, "patches": patches, "best_batch": best,
              "forward_inputs": total, "calibration": calibration, "pixel_steps": pixel_steps,
              "features_in_step": features_in_step, **{f"{name}_s": median(values) for name, values in times.items()}}
    if with_quantus:  # agreement where the protocols match: 8x8 patches, fill 0 and Quantus's "black"
        ours_drop = (region.probability[0] - region.probability[1:]).transpose("image", "fraction").values
        result["region_max_difference_fill0"] = float(np.abs(ours_drop - quantus_curve).max())
        black = images.amin((1, 2, 3))[:, None].repeat(1, 3)
        black_ours = ours(model, images, labels, relevance, region_fractions, PATCH, fill_value=black)
        black_drop = (black_ours.probability[0] - black_ours.probability[1:]).transpose("image", "fraction").values
        black_quantus = quantus_region(model, images, labels, relevance, steps, "black")
        result["region_max_difference_black"] = float(np.abs(black_drop - black_quantus).max())
        result["probability_range"] = float(region.probability.max() - region.probability.min())
    return result


def pixel_agreement(size: int = 48, count: int = 8) -> float:
    """PixelFlipping hides whole pixels per step only if features_in_step is 3 * pixels and divides H * W."""
    model, images, labels, relevance = setup(size, count)
    features_in_step = 3 * 96  # 96 pixels per step: 2304 = 24 * 96
    quantus_curve = quantus_pixels(model, images, labels, relevance, features_in_step, "black")
    fractions = [step * 96 / (size * size) for step in range(size * size // 96 + 1)]
    black = images.amin((1, 2, 3))[:, None].repeat(1, 3)
    curve = ours(model, images, labels, relevance, fractions, 1, fill_value=black)
    return float(np.abs(curve.probability[1:].transpose("image", "fraction").values - quantus_curve).max())


def road_masks(relevance: torch.Tensor, patch: int) -> np.ndarray:
    """Fraction 0.5 MoRF masks of the LRP maps (``patch`` x ``patch`` units), or uniformly random ones (patch 0)."""
    if patch == 0:
        return np.random.default_rng(0).random(tuple(relevance.shape)) < 0.5
    return masking.hidden_masks(relevance, fractions=(0.5,), order="morf", patch=patch)[:, 0].numpy()


def run_road(size: int, count: int, repeats: int, patch: int, setup_result=None) -> dict:
    """ROAD imputation at fraction 0.5: ours vs one scipy ``spsolve`` per image (interleaved, medians)."""
    _, images, _, relevance = setup_result if setup_result is not None else setup(size, count)
    hidden = road_masks(relevance, patch)
    arrays = images.numpy()
    warm = masking.RoadCache()  # compile (or load) the kernels before timing, the cached path's too
    for _ in range(2):
        masking.road_impute(arrays[:1], hidden[:1], warm)
    ours_times, reference_times, cached_times = [], [], []
    cache = masking.RoadCache()
    for _ in range(2):  # a factorisation is stored when its mask is seen the second time
        masking.road_impute(arrays, hidden, cache)
    for _ in range(repeats):
        seconds, imputed = timed(masking.road_impute, arrays, hidden, None)
        ours_times.append(seconds)
        seconds, reference = timed(lambda: np.stack([road_reference(image, mask)
                                                     for image, mask in zip(arrays, hidden)]))
        reference_times.append(seconds)
        cached_times.append(timed(masking.road_impute, arrays, hidden, cache)[0])  # every mask recurs
    few = 4  # the per-pixel loop is slow: time it on a few images
    per_pixel_s, per_pixel = timed(lambda: np.stack([road_reference_per_pixel(image, mask)
                                                     for image, mask in zip(arrays[:few], hidden[:few])]))
    return {"size": size, "images": count, "patch": patch, "unknowns_per_image": int(hidden.sum() / count),
            "ours_s": median(ours_times), "reference_s": median(reference_times),
            "cached_s": median(cached_times), "speedup": median(reference_times) / median(ours_times),
            "speedup_range": [min(reference_times) / max(ours_times), max(reference_times) / min(ours_times)],
            "max_difference": float(np.abs(imputed - reference).max()),
            "per_pixel_reference_s_per_image": per_pixel_s / few,
            "per_pixel_speedup": per_pixel_s / few / (median(ours_times) / count),
            "per_pixel_max_difference": float(np.abs(imputed[:few] - per_pixel).max())}


def road_section(sizes, repeats: int) -> list[dict]:
    """Print and return the ROAD rows: MoRF masks of LRP maps (pixels and 8x8 patches) and random masks."""
    print(f"\nROAD imputation at fraction 0.5, ours vs the reference approach (one scipy spsolve per image); "
          f"{repeats} interleaved repeats, medians; {load_average()}")
    rows = []
    for size in sizes:
        count, _ = CONFIGS.get(size, (16, 20))
        setup_result = setup(size, count)
        for patch in (1, PATCH, 0):
            row = run_road(size, count, repeats, patch, setup_result)
            rows.append(row)
            masks = "random" if patch == 0 else f"MoRF, {patch}x{patch}" if patch > 1 else "MoRF, pixels"
            print(f"  {size} px, {masks}, {count} images ({row['unknowns_per_image']} unknowns each): "
                  f"reference {row['reference_s'] / count * 1e3:.2f} ms/image, ours "
                  f"{row['ours_s'] / count * 1e3:.2f} ms/image: {row['speedup']:.1f}x "
                  f"(range {row['speedup_range'][0]:.1f}-{row['speedup_range'][1]:.1f}x); max |difference| "
                  f"{row['max_difference']:.1e}; mask recurring (cached) {row['cached_s'] / count * 1e3:.2f} ms/image; "
                  f"vs a per-pixel loop {row['per_pixel_reference_s_per_image'] * 1e3:.0f} ms/image, "
                  f"{row['per_pixel_speedup']:.0f}x")
    print(f"  ({load_average()})")
    return rows


def load_average() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--no-quantus", action="store_true")
    parser.add_argument("--road-only", action="store_true", help="only section 3, ROAD imputation")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:  # BLAS and LAPACK threads too, where threadpoolctl is installed
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    except ImportError:
        pass
    warnings.filterwarnings("ignore")
    if args.road_only:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
        results = {"threads": torch.get_num_threads(), "road": road_section(args.sizes, args.repeats)}
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(results, handle, indent=2, default=str)
        return results
    with_quantus = not args.no_quantus
    if with_quantus:
        try:
            import quantus
            quantus_version = quantus.__version__
        except ImportError as error:
            print(f"Quantus is not installed ({error}); skipping the Quantus comparison "
                  "(pip install 'lrp-faces[bench]')")
            with_quantus, quantus_version = False, None
    else:
        quantus_version = None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), quantus {quantus_version}, "
          f"{args.repeats} repeats, medians")
    results = {"threads": torch.get_num_threads(), "quantus": quantus_version, "curves": [], "road": []}
    for size in args.sizes:
        count, steps = CONFIGS.get(size, (16, 20))
        row = run_size(size, count, steps, args.repeats, with_quantus)
        results["curves"].append(row)
        print(f"\n{size} px, {count} images, {steps} steps of 8x8 patches (MoRF, fill 0), best batch "
              f"{row['best_batch']} for {row['forward_inputs']} forward inputs")
        print(f"  forward-pass limit      {row['limit_s']:.3f} s")
        print(f"  ours (best batch)       {row['ours_s']:.3f} s   {row['ours_s'] / row['limit_s']:.2f}x limit")
        print(f"  ours (default batch)    {row['ours_default_s']:.3f} s   "
              f"{row['ours_default_s'] / row['limit_s']:.2f}x limit")
        if with_quantus:
            print(f"  Quantus RegionPerturb.  {row['quantus_region_s']:.3f} s   "
                  f"{row['quantus_region_s'] / row['limit_s']:.2f}x limit, "
                  f"{row['quantus_region_s'] / row['ours_s']:.2f}x ours; max |curve difference| "
                  f"{row['region_max_difference_fill0']:.1e} (fill 0), {row['region_max_difference_black']:.1e} "
                  f"(black = per-image minimum)")
        print(f"  pixels, {row['pixel_steps']} steps of {row['features_in_step']} features: ours "
              f"{row['ours_pixels_s']:.3f} s ({row['ours_pixels_s'] / row['limit_pixels_s']:.2f}x limit "
              f"{row['limit_pixels_s']:.3f} s)" + (f", Quantus PixelFlipping {row['quantus_pixels_s']:.3f} s "
                                                    f"({row['quantus_pixels_s'] / row['ours_pixels_s']:.2f}x ours)"
                                                    if with_quantus else ""))
    if with_quantus:
        results["pixel_flipping_max_difference_48px"] = pixel_agreement()
        print(f"\nPixelFlipping vs ours where whole pixels are flipped per step (48 px, 96 px per step, black): "
              f"max |difference| {results['pixel_flipping_max_difference_48px']:.1e}")
    results["road"] = road_section(args.sizes, max(1, min(args.repeats, 3)))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2, default=str)


if __name__ == "__main__":
    main()
