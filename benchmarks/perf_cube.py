"""Peak memory and write overhead of ``lrp_faces.cube.compute`` on small models.

Two questions, each measured in fresh subprocesses on a face folder read lazily from PNG files (``FaceDataset``), so
that the data set itself costs no memory per image:

* does peak RSS grow with the number of images? ``compute`` for 100 and for 1,000 images (target ratio <= 1.2);
* what does writing cost? ``compute`` vs the same attribution alone (model loading, image loading and
  ``lrp_faces.attribute`` per batch, results discarded), runs interleaved, medians (target <= 10 %). ``compute``
  writes each block of images to a small checksummed file as it finishes (for resuming), then the model's file;
* what does checking a reused cube cost? ``cube.verify`` (every chunk's checksum) and a rerun that reuses every
  file (verify, plus hashing each checkpoint), relative to computing the cube.

    python benchmarks/perf_cube.py                       # 2 width-1/8 VGG-16s, 64 px, 100 vs 1,000 images
    python benchmarks/perf_cube.py --models 1 --repeats 1 --large 500
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from PIL import Image

import lrp_faces
from lrp_faces import cube
from lrp_faces.faces import FaceDataset, synthetic_faces
from lrp_faces.methods import LRPMethod
from lrp_faces.models import save_model
from lrp_faces.zoo import ModelSpec, Zoo, ZooEntry

SIZE = 64
IDENTITIES = 10


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:  # pragma: no cover - not Linux
        pass
    return None


def reset_peak_rss() -> bool:
    """Restart the peak-RSS high-water mark (Linux >= 4.0), so that it measures only what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:  # pragma: no cover - then ru_maxrss, the peak since the process started, is used
        return False


def rss_mb() -> float:
    return _status_mb("VmRSS") or peak_rss_mb()


def peak_rss_mb() -> float:
    return _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def prepare(folder: Path, images: int, models: int) -> None:
    """PNG face folders (one per identity) and the zoo's checkpoints, written once for all runs."""
    faces = synthetic_faces(IDENTITIES, -(-images // IDENTITIES), size=SIZE, seed=0)
    for index in range(images):
        target = folder / "faces" / f"id{faces.identity[index]:03d}"
        target.mkdir(parents=True, exist_ok=True)
        pixels = (faces.images[index].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(target / f"{faces.image_ids[index]}.png")
    for seed in range(models):
        torch.manual_seed(seed)
        model = lrp_faces.vgg16(num_classes=IDENTITIES, width=1 / 8, pool_size=2, classifier_width=64).eval()
        spec = ModelSpec("faces", "identity", seed)
        save_model(model, folder / "zoo" / f"{spec.name}.pt", spec=spec)


def child(mode: str, images: int, folder: Path, batch_size: int, threads: int) -> None:
    """One measurement in this fresh process: print seconds, peak RSS before and after, as JSON."""
    torch.set_num_threads(threads)
    zoo = Zoo([ZooEntry(ModelSpec("faces", "identity", int(path.stem.rsplit("seed", 1)[1])), path)
               for path in sorted((folder / "zoo").glob("*.pt"))], image_size=SIZE)
    dataset = FaceDataset.from_folders(folder / "faces", image_size=SIZE, check="exists").subset(np.arange(images))
    labels = torch.as_tensor(dataset.labels("identity"))
    warm = torch.stack([dataset.load_image(index) for index in range(batch_size)])
    lrp_faces.attribute(zoo[next(iter(zoo))], warm, target=labels[:batch_size], batch_size=batch_size)
    xr.DataArray(np.zeros(2)).chunk().compute()  # one-time imports (dask.array, chunk managers) in both modes
    gc.collect()
    reset_peak_rss()
    before, cpu = rss_mb(), cpu_seconds()
    spent = {"explain": 0.0, "images": 0.0}  # inside both modes: the LRP passes and the image loading
    LRPMethod.explain = _timed(LRPMethod.explain, spent, "explain")
    FaceDataset.load_image = _timed(FaceDataset.load_image, spent, "images")
    started = time.perf_counter()
    if mode == "compute":
        cube.compute(zoo, dataset, folder / f"cube-{images}", batch_size=batch_size, progress=False, overwrite=True)
    else:
        for spec in zoo:
            model = zoo[spec]
            for start in range(0, images, batch_size):
                stop = min(start + batch_size, images)
                batch = torch.stack([dataset.load_image(index) for index in range(start, stop)])
                lrp_faces.attribute(model, batch, target=labels[start:stop], batch_size=batch_size)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    checks = {}
    if mode == "compute":
        peak = peak_rss_mb()
        started = time.perf_counter()
        cube.verify(folder / f"cube-{images}")
        checks["verify_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        cube.compute(zoo, dataset, folder / f"cube-{images}", batch_size=batch_size, progress=False)
        checks["rerun_seconds"] = time.perf_counter() - started
    else:
        peak = peak_rss_mb()
    print(json.dumps({"mode": mode, "images": images, "seconds": seconds, "cpu": cpu, "rss_before_mb": before,
                      "peak_rss_mb": peak, **spent, **checks}))


def _timed(function, spent: dict, key: str):
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - started
    return timed


def measure(mode: str, images: int, folder: Path, batch_size: int, threads: int) -> dict:
    output = subprocess.run([sys.executable, __file__, "--child", mode, str(images), str(folder), str(batch_size),
                             str(threads)], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def report(arguments, small: dict, large: dict) -> None:
    maps = arguments.large * arguments.models
    peak_small = small["compute"]["peak_rss_mb"]
    peak_large = max(result["peak_rss_mb"] for result in large["compute"])
    added_small = peak_small - small["compute"]["rss_before_mb"]
    added_large = max(result["peak_rss_mb"] - result["rss_before_mb"] for result in large["compute"])
    print(f"\npeak RSS during compute: {arguments.small} images {peak_small:.0f} MB, {arguments.large} images "
          f"{peak_large:.0f} MB, ratio {peak_large / peak_small:.3f} (target <= 1.2)")
    print(f"  above the RSS before the call: {added_small:.1f} MB vs {added_large:.1f} MB (the {arguments.large}-image "
          f"cube holds {maps * SIZE * SIZE * 4 / 2**20:.0f} MB of float32 relevance)")
    print(f"\nwrite overhead, {arguments.large} images x {arguments.models} model(s):")
    rest = {mode: statistics.median((result["seconds"] - result["explain"] - result["images"]) / result["explain"]
                                    for result in results) for mode, results in large.items()}
    explain = statistics.median(result["explain"] for results in large.values() for result in results)
    print(f"  accounted within each run (LRP passes {explain:.1f} s per run): time outside the LRP passes and image "
          f"loading is {100 * rest['attribute']:.1f} % of the LRP time for attribution alone (lrp_faces.attribute per "
          f"batch) and {100 * rest['compute']:.1f} % for compute: writing adds "
          f"{100 * (rest['compute'] - rest['attribute']):+.1f} % (target <= 10 %)")
    for clock, label in (("cpu", "CPU time"), ("seconds", "wall time")):
        alone = statistics.median(result[clock] for result in large["attribute"])
        computing = statistics.median(result[clock] for result in large["compute"])
        print(f"  separate runs, {label}, median of {arguments.repeats}: attribution alone {alone:.1f} s, compute "
              f"{computing:.1f} s, {100 * (computing / alone - 1):+.1f} % (runs: " + "; ".join(
                  f"{mode} " + " ".join(f"{result[clock]:.1f}" for result in results)
                  for mode, results in large.items()) + "; noisy on a shared machine)")
    computing = statistics.median(result["seconds"] for result in large["compute"])
    verify = statistics.median(result["verify_seconds"] for result in large["compute"])
    rerun = statistics.median(result["rerun_seconds"] for result in large["compute"])
    print(f"\nchecking a reused cube, {arguments.large} images x {arguments.models} model(s), medians: cube.verify "
          f"{verify:.2f} s ({100 * verify / computing:.1f} % of computing it, {computing:.1f} s); a rerun that reuses "
          f"every file {rerun:.2f} s ({100 * rerun / computing:.1f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=100, help="images of the small run")
    parser.add_argument("--large", type=int, default=1000, help="images of the large run")
    parser.add_argument("--models", type=int, default=2, help="width-1/8 VGG-16s in the zoo")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved compute/attribute pairs, large run")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process (1 keeps timings steady on a shared machine)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        mode, images, folder, batch_size, threads = arguments.child
        child(mode, int(images), Path(folder), int(batch_size), int(threads))
        return
    folder = Path(tempfile.mkdtemp(prefix="perf_cube_"))
    try:
        prepare(folder, arguments.large, arguments.models)
        run = lambda mode, images: measure(mode, images, folder, arguments.batch_size, arguments.threads)  # noqa
        print(f"{arguments.models} width-1/8 VGG-16(s), {SIZE} px, batch {arguments.batch_size}, "
              f"{arguments.threads} thread(s); PNG folder read lazily")
        small = {mode: run(mode, arguments.small) for mode in ("compute", "attribute")}
        large = {"compute": [], "attribute": []}
        for _ in range(arguments.repeats):
            for mode in ("compute", "attribute"):
                large[mode].append(run(mode, arguments.large))
        report(arguments, small, large)
        size = sum(path.stat().st_size for path in (folder / f"cube-{arguments.large}").glob("*.nc"))
        print(f"  cube on disk: {size / 2**20:.1f} MB "
              f"({size / (arguments.models * arguments.large * SIZE * SIZE * 4):.0%} of the raw float32 maps)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
