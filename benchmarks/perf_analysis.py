"""Time and peak memory of ``lrp_faces.analysis.similarity`` on a cube on disk, read block by block.

Target (issue 5): 12 models x 1,000 images at 64 px in under a minute on 2 cores, without holding the whole cube in
memory. The cube holds random relevance written with the cube's own writer (one NetCDF4 file per model, chunks of
16 images, as ``lrp_faces.cube.compute`` writes them). Each metric runs in a fresh process: the cube is opened, a
warm-up on a tiny in-memory cube loads the imports, the peak-RSS mark is reset, then the cube is opened and the full
call is timed; RSS growth counts from before the opening, so what the reader keeps (dask chunks, netCDF caches) counts.

Three ways of opening the cube are measured, because the reader, not the analysis, decides most of the memory:

* ``auto``: ``cube.open(path, chunks="auto")`` (dask chunks of all images of a model; a block of images reads whole
  chunks);
* ``disk``: ``cube.open(path)``, the default (dask chunks = the 16-image chunks on disk);
* ``disk+cache``: the same after ``netCDF4.set_chunk_cache(4 MiB)`` (netCDF-C caches up to 64 MiB of decompressed
  chunks per variable and open file by default, i.e. up to the whole cube here).

    python benchmarks/perf_analysis.py                         # 12 models x 1,000 images x 64 px, every metric
    python benchmarks/perf_analysis.py --images 200 --repeats 1 --metrics pearson
"""
from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from perf_cube import cpu_seconds, peak_rss_mb, reset_peak_rss, rss_mb  # the cube benchmark's RSS helpers

MODES = ("auto", "disk", "disk+cache")
GRID = (("faces", "objects"), ("gender", "identity"))


def write_cube(folder: Path, models: int, images: int, size: int, chunk: int = 16, seed: int = 0) -> Path:
    """Random relevance for ``models`` models (2 pretrainings x 2 tasks x seeds) with the cube's own writer."""
    from lrp_faces.cube._store import FORMAT, FORMAT_VERSION, Batch, ImageTable, write_model_file
    from lrp_faces.zoo import ModelSpec

    seeds = -(-models // 4)
    specs = [ModelSpec(pretraining, task, index) for index in range(seeds) for pretraining in GRID[0]
             for task in GRID[1]][:models]
    ids = [f"img{index:05d}" for index in range(images)]
    table = ImageTable(ids, np.full(images, -1), np.full(images, -1), size, size, "benchmark")
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        attrs = {"cube_format": FORMAT, "cube_format_version": FORMAT_VERSION, "method": "random", "n_images": images,
                 "input_height": size, "input_width": size, "pretraining": spec.pretraining, "task": spec.task,
                 "seed": spec.seed}

        def batches():
            for start in range(0, images, chunk):
                count = min(chunk, images - start)
                yield start, Batch(rng.standard_normal((count, size, size), dtype=np.float32),
                                   np.zeros(count, np.float32), np.zeros(count, np.int64), np.zeros(count, np.int64))

        write_model_file(folder, spec, attrs, table, chunk, batches())
    return folder


def child(folder: Path, metric: str, mode: str, repeats: int) -> None:
    """Measure in this fresh process; print seconds per repeat and RSS figures as JSON."""
    if mode == "disk+cache":
        import netCDF4
        netCDF4.set_chunk_cache(4 * 2 ** 20, 1009, 1.0)
    import xarray as xr
    from lrp_faces import analysis, cube

    warm = xr.Dataset({"relevance": (("pretraining", "task", "seed", "image", "y", "x"),
                                     np.random.default_rng(0).standard_normal((1, 2, 1, 4, 8, 8)))},
                      coords={"pretraining": ["faces"], "task": ["gender", "identity"], "seed": [0],
                              "image": ["a", "b", "c", "d"]})
    analysis.similarity(warm.chunk({"image": 2}), metric, n_bootstrap=10)  # imports: dask, scipy, tqdm
    gc.collect()
    reset_peak_rss()
    before = rss_mb()  # before opening the cube: its reading (dask, netCDF caches) counts
    opened = cube.open(folder, chunks="auto") if mode == "auto" else cube.open(folder)
    seconds, cpu = [], cpu_seconds()
    for _ in range(repeats):
        started = time.perf_counter()
        result = analysis.similarity(opened, metric)
        seconds.append(time.perf_counter() - started)
        del result
    print(json.dumps({"metric": metric, "mode": mode, "seconds": seconds, "cpu": (cpu_seconds() - cpu) / repeats,
                      "rss_before_mb": before, "peak_rss_mb": peak_rss_mb()}))


def measure(folder: Path, metric: str, mode: str, repeats: int) -> dict:
    output = subprocess.run([sys.executable, __file__, "--child", str(folder), metric, mode, str(repeats)],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per metric and mode (median reported)")
    parser.add_argument("--metrics", nargs="+", default=["spearman", "pearson", "topk_iou", "cosine"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        folder, metric, mode, repeats = arguments.child
        child(Path(folder), metric, mode, int(repeats))
        return
    folder = Path(tempfile.mkdtemp(prefix="perf_analysis_"))
    try:
        started = time.perf_counter()
        write_cube(folder / "cube", arguments.models, arguments.images, arguments.size)
        raw = arguments.models * arguments.images * arguments.size ** 2 * 4 / 2 ** 20
        disk = sum(path.stat().st_size for path in (folder / "cube").glob("*.nc")) / 2 ** 20
        print(f"cube: {arguments.models} models x {arguments.images} images x {arguments.size} px: {raw:.0f} MiB of "
              f"float32 maps, {disk:.0f} MiB on disk (written in {time.perf_counter() - started:.1f} s)")
        print(f"{'metric':<10} {'open':<11} {'median s':>9} {'runs s':<20} {'CPU s':>6} {'peak RSS growth':>16}")
        for metric in arguments.metrics:
            for mode in arguments.modes:
                result = measure(folder / "cube", metric, mode, arguments.repeats)
                growth = result["peak_rss_mb"] - result["rss_before_mb"]
                runs = " ".join(f"{value:.1f}" for value in result["seconds"])
                print(f"{metric:<10} {mode:<11} {statistics.median(result['seconds']):>9.1f} {runs:<20} "
                      f"{result['cpu']:>6.1f} {growth:>8.0f} MiB ({growth / raw:.0%})", flush=True)
        print("target: under 60 s per call on 2 cores; peak RSS growth well below the cube's size")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
