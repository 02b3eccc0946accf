"""Scale-out: throughput on a device, and a study's steps as units in-process, on ``local:1`` and on ``local:2``.

Side by side in one run (medians over ``--repeats``; ratios against the run beside them):

1. **Device throughput** of a full-size VGG-16 at ``--size`` px: forward images per second at each batch size and the
   best; LRP (``epsilon_gamma_box``) and the plain gradient at ``--lrp-batch``, their time ratio, and on CUDA the peak
   memory of each.
2. **Masking on the device**: :func:`lrp_faces.masking.generalization` for ``--models`` models x ``--images`` images x
   ``--fractions`` fractions (fill ``mean``), as masked images scored per second and as a share of the best forward
   throughput; and ours against Quantus ``RegionPerturbation`` for one model on the same images and device
   (``--quantus``, needs the ``bench`` extra).
3. **Executors** (``--executors``): the cube and the masking step of the same study as units of ``--block`` images,
   in-process, on ``local:1`` and on ``local:2`` (one thread per worker and per unit): seconds, units per second,
   images x models per second, dask's overhead per unit against in-process, and the 1 -> 2 worker speed-up.
4. **Extrapolation** of the full study (20 models, 1,000 images, 10 fractions) on this machine.

    python benchmarks/perf_scale.py --device cuda --quantus                      # sections 1, 2 and 4 on a GPU
    python benchmarks/perf_scale.py --executors --size 224 --models 2 --images 32 --fractions 5   # section 3 (CPU)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import lrp_faces
from lrp_faces import cube, masking
from lrp_faces.compute import cluster_client
from lrp_faces.devices import resolve_device
from lrp_faces.zoo import ModelSpec, Zoo, ZooEntry

FULL_STUDY = {"models": 20, "images": 1000, "fractions": 10}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device, repeats: int) -> float:
    """Median seconds of ``function()`` over ``repeats`` runs after one warm-up."""
    function()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """He-scaled dense layers and small biases: outputs of trained-like size (as the other benchmarks)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator)
                                    * (2.0 / module.in_features) ** 0.5)
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.05)
    return model.eval()


def full_vgg(seed: int, classes: int = 2) -> lrp_faces.models.NormalizedVGG:
    torch.manual_seed(seed)
    return trained_like(lrp_faces.vgg16(num_classes=classes, preprocessing=lrp_faces.VGGFACE), seed)


def faces(size: int, count: int):
    return lrp_faces.synthetic_faces(max(2, count // 4), 4, size=size, seed=0, task="gender").subset(
        np.arange(count))


# ------------------------------------------------------------------------------------------------ section 1
def device_throughput(device: torch.device, size: int, batches: list[int], lrp_batch: int, repeats: int) -> dict:
    model = full_vgg(0).to(device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    forward = {}
    for batch in batches:
        images = torch.rand(batch, 3, size, size, device=device)

        def run(images=images):
            with torch.inference_mode():
                model(images)
        try:
            forward[batch] = batch / timed(run, device, repeats)
        except torch.OutOfMemoryError:
            break
    images = torch.rand(lrp_batch, 3, size, size, device=device)
    target = torch.zeros(lrp_batch, dtype=torch.long, device=device)
    rates, peaks = {}, {}
    for name in ("epsilon_gamma_box", "gradient"):
        method = lrp_faces.methods.get(name)

        def run(method=method):
            method.explain(model, images, target)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        rates[name] = lrp_batch / timed(run, device, repeats)
        if device.type == "cuda":
            peaks[name] = (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    best = max(forward, key=forward.get)
    return {"forward_images_per_s": forward, "best_batch": best, "best_forward_images_per_s": forward[best],
            "lrp_images_per_s": rates["epsilon_gamma_box"], "gradient_images_per_s": rates["gradient"],
            "lrp_over_gradient_time": rates["gradient"] / rates["epsilon_gamma_box"],
            "peak_mb": peaks}


# ------------------------------------------------------------------------------------------------ section 2
def study_files(folder: Path, models: int, size: int) -> Zoo:
    """``models`` full-size gender checkpoints (seeds 0, 1, ...) written with save_model."""
    entries = []
    for seed in range(models):
        spec = ModelSpec("imagenet", "gender", seed)
        path = folder / f"{spec.name}.pt"
        lrp_faces.save_model(full_vgg(seed), path, spec=spec)
        entries.append(ZooEntry(spec, path))
    return Zoo(entries, image_size=size)


def fractions_of(count: int) -> tuple[float, ...]:
    return tuple(float(value) for value in np.round(np.linspace(0.0, 0.5, count), 4))


def masked_passes(result) -> int:
    """Forward passes of a generalisation run: per target, every source and the random order at each distinct
    positive hidden count, plus the unmasked images."""
    counts = np.unique(result["hidden_units"].values) if "hidden_units" in result.coords else None
    fractions = [value for value in result["fraction"].values if value > 0]
    distinct = len(counts[counts > 0]) if counts is not None else len(fractions)
    targets = int(np.prod([result.sizes[f"target_{dim}"] for dim in ("pretraining", "task", "seed")]))
    images = result.sizes["image"]
    return targets * (targets + 1) * distinct * images + targets * images


def masking_throughput(device: torch.device, size: int, models: int, images: int, fractions: int,
                       quantus: bool, folder: Path) -> dict:
    zoo = study_files(folder, models, size)
    data = faces(size, images)
    maps = cube.compute(zoo, data, folder / "cube", batch_size=8, device=device, progress=False)
    started = time.perf_counter()
    result = masking.generalization(maps, zoo, data, fractions=fractions_of(fractions), fill="mean", device=device,
                                    n_bootstrap=10, n_permutations=10, progress=False)
    synchronize(device)
    seconds = time.perf_counter() - started
    passes = masked_passes(result)
    found = {"masked_images_per_s": passes / seconds, "passes": passes, "seconds": seconds}
    found.update(scoring_only(zoo, data, maps, device, fractions))
    if quantus:
        found.update(quantus_comparison(zoo, data, maps, device, fractions))
    return found


def scoring_only(zoo: Zoo, data, maps, device: torch.device, fractions: int) -> dict:
    """The masking engine alone: one target in memory on ``device``, every source's maps as tensors, all images in
    one unit (no loading, no unit store, no statistics): masked images scored per second."""
    specs = list(zoo)
    model = zoo[specs[0]].to(device)
    sources = [torch.from_numpy(maps.relevance.sel(pretraining=spec.pretraining, task=spec.task,
                                                  seed=spec.seed).values) for spec in specs]
    labels = np.asarray(data.labels(specs[0].task))
    config = masking.MaskingConfig(fractions=fractions_of(fractions), fill="mean")
    colours = masking.fill_colours(data.images, config)
    count = len(labels)

    rows = min(count * (fractions - 1), 64 if device.type == "cuda" else 16)  # as the step chooses them

    def run():
        masking.generalization_block(model, data.images, sources, labels, config, image_index=range(count),
                                     fill_colours=colours, batch_size=rows, device=device)
    seconds = timed(run, device, 2)
    passes = (len(specs) + 1) * (fractions - 1) * count + count
    return {"scoring_only_images_per_s": passes / seconds}


def quantus_comparison(zoo: Zoo, data, maps, device: torch.device, fractions: int) -> dict:
    import quantus
    spec = next(iter(zoo))
    model = zoo[spec].to(device)
    relevance = maps.relevance.sel(pretraining=spec.pretraining, task=spec.task, seed=spec.seed).values
    labels = np.asarray(data.labels(spec.task))
    patch, size = 16, data.images.shape[-1]  # Quantus hides one more patch per step: the same steps for ours

    def theirs():
        metric = quantus.RegionPerturbation(patch_size=patch, order="morf", regions_evaluation=fractions - 1,
                                            perturb_baseline="mean", normalise=False, abs=False,
                                            disable_warnings=True, display_progressbar=False)
        metric(model=model, x_batch=data.images.numpy(), y_batch=labels, a_batch=relevance[:, None],
               device=str(device), batch_size=len(labels), channel_first=True, softmax=True)

    def ours():
        masking.curves(model, data.images, labels, relevance, fractions=tuple(
            step * patch * patch / size ** 2 for step in range(fractions)), order="morf", fill="mean", patch=patch,
            device=device)

    theirs_seconds = timed(theirs, device, 2)
    ours_seconds = timed(ours, device, 2)
    return {"quantus_seconds": theirs_seconds, "ours_seconds": ours_seconds,
            "quantus_over_ours": theirs_seconds / ours_seconds}


# ------------------------------------------------------------------------------------------------ section 3
def executor_runs(size: int, models: int, images: int, fractions: int, block: int, folder: Path) -> dict:
    zoo = study_files(folder, models, size)
    data = faces(size, images)
    runs = {}
    for name in ("in-process", "local:1", "local:2"):
        with cluster_client(None if name == "in-process" else name) as client:
            torch.set_num_threads(1)
            started = time.perf_counter()
            maps = cube.compute(zoo, data, folder / f"cube-{name}", batch_size=block, block_size=block,
                                client=client, threads=1, progress=False)
            cube_seconds = time.perf_counter() - started
            started = time.perf_counter()
            masking.generalization(maps, zoo, data, fractions=fractions_of(fractions), fill="mean", client=client,
                                   threads=1, block_size=block, n_bootstrap=10, n_permutations=10, progress=False)
            mask_seconds = time.perf_counter() - started
        units = models * -(-images // block)
        runs[name] = {"cube_seconds": cube_seconds, "mask_seconds": mask_seconds,
                      "cube_units_per_s": units / cube_seconds, "mask_units_per_s": units / mask_seconds,
                      "cube_images_models_per_s": models * images / cube_seconds,
                      "mask_images_models_per_s": models * images / mask_seconds}
    inner, one, two = runs["in-process"], runs["local:1"], runs["local:2"]
    runs["overhead_per_unit"] = {step: (one[f"{step}_seconds"] - inner[f"{step}_seconds"]) / inner[f"{step}_seconds"]
                                 for step in ("cube", "mask")}
    runs["speedup_1_to_2"] = {step: one[f"{step}_seconds"] / two[f"{step}_seconds"] for step in ("cube", "mask")}
    return runs


# ------------------------------------------------------------------------------------------------ section 4
def extrapolate(throughput: dict, masking_rate: float | None) -> dict:
    models, images, fractions = FULL_STUDY["models"], FULL_STUDY["images"], FULL_STUDY["fractions"]
    lrp_seconds = models * images / throughput["lrp_images_per_s"]
    rate = masking_rate or throughput["best_forward_images_per_s"]
    passes = models * (models + 1) * (fractions - 1) * images + models * images
    masking_seconds = passes / rate
    lerf_seconds = models * ((fractions - 1) * images + images) / rate
    return {"cube_hours": lrp_seconds / 3600, "masking_hours": masking_seconds / 3600,
            "lerf_hours": lerf_seconds / 3600, "masking_passes": passes,
            "total_hours": (lrp_seconds + masking_seconds + lerf_seconds) / 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--lrp-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", type=int, default=2)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--fractions", type=int, default=5)
    parser.add_argument("--block", type=int, default=8)
    parser.add_argument("--quantus", action="store_true")
    parser.add_argument("--executors", action="store_true", help="section 3 only (slow on a CPU at 224 px)")
    parser.add_argument("--json", help="also write the figures here")
    arguments = parser.parse_args()
    device = resolve_device(arguments.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"perf_scale: {name}, torch {torch.__version__}, {arguments.size} px, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    figures = {"device": name, "size": arguments.size}
    with tempfile.TemporaryDirectory(prefix="perf_scale_") as folder:
        if arguments.executors:
            runs = executor_runs(arguments.size, arguments.models, arguments.images, arguments.fractions,
                                 arguments.block, Path(folder))
            figures["executors"] = runs
            print(f"3. executors, {arguments.models} models x {arguments.images} images x {arguments.fractions} "
                  f"fractions, units of {arguments.block} images, 1 thread per unit")
            for key in ("in-process", "local:1", "local:2"):
                run = runs[key]
                print(f"   {key:10s} cube {run['cube_seconds']:7.1f} s ({run['cube_units_per_s']:.3f} units/s, "
                      f"{run['cube_images_models_per_s']:.2f} images x models/s)  mask {run['mask_seconds']:7.1f} s "
                      f"({run['mask_units_per_s']:.3f} units/s, {run['mask_images_models_per_s']:.2f} images x "
                      f"models/s)")
            print(f"   dask overhead per unit (local:1 vs in-process): cube {runs['overhead_per_unit']['cube']:+.1%}, "
                  f"mask {runs['overhead_per_unit']['mask']:+.1%} (target <= 5 %)")
            print(f"   1 -> 2 workers: cube {runs['speedup_1_to_2']['cube']:.2f}x, mask "
                  f"{runs['speedup_1_to_2']['mask']:.2f}x (target >= 1.7x)")
        else:
            throughput = device_throughput(device, arguments.size, arguments.batches, arguments.lrp_batch,
                                           arguments.repeats)
            figures["throughput"] = throughput
            print("1. device throughput, full-size VGG-16")
            print("   forward images/s by batch: " + ", ".join(f"{batch}: {rate:.1f}" for batch, rate in
                                                           throughput["forward_images_per_s"].items()))
            print(f"   best forward: {throughput['best_forward_images_per_s']:.1f} images/s at batch "
                  f"{throughput['best_batch']}")
            print(f"   batch {arguments.lrp_batch}: LRP {throughput['lrp_images_per_s']:.1f} images/s, gradient "
                  f"{throughput['gradient_images_per_s']:.1f} images/s; LRP / gradient time "
                  f"{throughput['lrp_over_gradient_time']:.2f}x (target <= 2x)"
                  + (f"; peak MB LRP {throughput['peak_mb']['epsilon_gamma_box']:.0f}, gradient "
                     f"{throughput['peak_mb']['gradient']:.0f}" if throughput["peak_mb"] else ""))
            found = masking_throughput(device, arguments.size, arguments.models, arguments.images,
                                       arguments.fractions, arguments.quantus, Path(folder))
            figures["masking"] = found
            share = found["masked_images_per_s"] / throughput["best_forward_images_per_s"]
            print(f"2. masking generalisation, {arguments.models} models x {arguments.images} images x "
                  f"{arguments.fractions} fractions: {found['masked_images_per_s']:.1f} masked images/s "
                  f"({found['passes']} passes in {found['seconds']:.1f} s) = {share:.0%} of the best forward "
                  f"throughput (target >= 80 %)")
            print(f"   the masking engine alone (one target in memory, maps as tensors, no store or statistics): "
                  f"{found['scoring_only_images_per_s']:.1f} masked images/s = "
                  f"{found['scoring_only_images_per_s'] / throughput['best_forward_images_per_s']:.0%} of the best "
                  "forward throughput")
            if "quantus_seconds" in found:
                print(f"   ours vs Quantus RegionPerturbation, one model: ours {found['ours_seconds']:.2f} s, Quantus "
                      f"{found['quantus_seconds']:.2f} s: Quantus / ours {found['quantus_over_ours']:.1f}x")
            full = extrapolate(throughput, found["masked_images_per_s"])
            figures["full_study"] = full
            print(f"4. full study (20 models x 1,000 images x 10 fractions) here: cube {full['cube_hours']:.2f} h, "
                  f"masking {full['masking_hours']:.2f} h ({full['masking_passes']:,} passes), LeRF "
                  f"{full['lerf_hours']:.2f} h; total {full['total_hours']:.2f} h")
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
