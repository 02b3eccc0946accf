"""Our default LRP method vs stock zennit EpsilonGammaBox vs the plain gradient, side by side.

For each input size it prints median seconds per image (runs interleaved, so machine noise hits all three alike),
the ratios, the peak memory of one batch (each measured in a fresh subprocess), and the largest difference between
our maps and stock zennit's, relative to the largest relevance; last, the largest peak-memory ratio of our LRP over
the plain gradient against its target (<= 1.3).

    python benchmarks/perf_attribution.py                 # 64, 112 and 224 px, batch 8
    python benchmarks/perf_attribution.py --sizes 64 112 --repeats 3
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import subprocess
import sys
import time

import torch
from zennit.composites import EpsilonGammaBox
from zennit.rules import Pass

import lrp_faces
from lrp_faces.nn import PixelNorm

KINDS = ("plain", "ours", "stock")
MEMORY_TARGET = 1.3
"""Peak memory of our LRP over the plain gradient, at 112 and 224 px (issue 13.3)."""


def trained_scale(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """He-initialised dense layers and small random biases, i.e. the magnitudes of a trained network.

    torchvision's N(0, 0.01) classifier makes the relevance of a random VGG-16 ill-conditioned: float32 rounding
    alone then moves stock zennit's own maps by ~1e-3 relative to float64 (see ``--init torchvision``).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator)
                                    * (2.0 / module.in_features) ** 0.5)
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.05)
    return model


def build(size: int, batch: int, seed: int = 0, init: str = "trained"):
    """A random-weight full-width VGG-16 (ImageNet preprocessing, 1000 classes) and a batch of images."""
    torch.manual_seed(seed)
    model = lrp_faces.vgg16().eval()
    if init == "trained":
        trained_scale(model, seed)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return model, images


def run(kind: str, model, images) -> torch.Tensor:
    """One batch: the map (N, H, W) of the predicted class's logit."""
    if kind == "ours":
        return lrp_faces.attribute(model, images, contrastive=False, batch_size=len(images))
    leaf = images.clone().requires_grad_()
    if kind == "plain":
        logits = model(leaf)
        target = logits.argmax(1)
        (gradient,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), leaf)
        return gradient.sum(1)
    pre = model.preprocessing
    mean = torch.tensor(pre.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float64).view(1, 3, 1, 1)
    composite = EpsilonGammaBox(low=((0 - mean) / std).to(images.dtype), high=((pre.scale - mean) / std).to(images.dtype),
                                gamma=0.25, epsilon=1e-6,
                                layer_map=[(PixelNorm, Pass())])
    with composite.context(model) as modified:
        logits = modified(leaf)
        target = logits.argmax(1)
        seed = torch.zeros_like(logits).scatter_(1, target[:, None], logits.gather(1, target[:, None]).detach())
        (gradient,) = torch.autograd.grad(logits, leaf, seed)
    return gradient.sum(1)


def relative_error(maps: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest per-image max|maps - reference| / max|reference|."""
    reference = reference.to(maps.dtype) if maps.dtype != reference.dtype else reference
    difference = (maps.double() - reference.double()).abs().flatten(1).amax(1)
    return float((difference / reference.double().abs().flatten(1).amax(1)).max())


def memory_status_mb(field: str) -> float:
    """A field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_memory() -> None:
    """Reset the peak resident set size (VmHWM) of this process to its current size (Linux)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def peak_memory_child(kind: str, size: int, batch: int, init: str) -> None:
    """Entry point of the subprocess: print the peak memory one batch adds on top of model and images."""
    model, images = build(size, batch, init=init)
    gc.collect()
    reset_peak_memory()
    before = memory_status_mb("VmRSS")
    run(kind, model, images)
    print(json.dumps({"peak_mb": memory_status_mb("VmHWM") - before}))


def peak_memory(kind: str, size: int, batch: int, init: str) -> float:
    output = subprocess.run([sys.executable, __file__, "--child", kind, str(size), str(batch), init], check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 112, 224])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per method (default 7/5/3 by size)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--f64-images", type=int, default=2, help="images checked against float64 (0 to skip)")
    parser.add_argument("--init", choices=["trained", "torchvision"], default="trained",
                        help="weight scale of the random VGG-16 (default: trained-like magnitudes)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        peak_memory_child(args.child[0], int(args.child[1]), int(args.child[2]), args.child[3])
        return

    from importlib.metadata import version
    print(f"torch {torch.__version__}, zennit {version('zennit')}, {torch.get_num_threads()} threads, "
          f"batch {args.batch}, random-weight VGG-16 ({args.init} init)\n")
    header = (f"{'size':>5} | {'plain s/img':>11} {'ours s/img':>10} {'stock s/img':>11} | {'ours/plain':>10} "
              f"{'stock/ours':>10} | {'peak MB plain':>13} {'ours':>7} {'stock':>7} {'ours/plain':>10} | "
              f"{'ours-stock':>10} | {'f64 err ours':>12} {'stock':>8}")
    print(header)
    print("-" * len(header))
    memory_ratios = {}
    for size in args.sizes:
        repeats = args.repeats or (7 if size <= 64 else 5 if size <= 112 else 3)
        model, images = build(size, args.batch, init=args.init)
        maps = {kind: run(kind, model, images) for kind in KINDS}  # warm-up, and the maps to compare
        times = {kind: [] for kind in KINDS}
        for _ in range(repeats):
            for kind in KINDS:
                start = time.perf_counter()
                run(kind, model, images)
                times[kind].append((time.perf_counter() - start) / args.batch)
        median = {kind: statistics.median(values) for kind, values in times.items()}
        difference = relative_error(maps["ours"], maps["stock"])
        if args.f64_images:
            double, subset = copy.deepcopy(model).double(), images[:args.f64_images].double()
            truth = run("stock", double, subset)
            errors = {kind: relative_error(maps[kind][:args.f64_images], truth) for kind in ("ours", "stock")}
            del double
        else:
            errors = {"ours": float("nan"), "stock": float("nan")}
        if args.no_memory:
            memory = {kind: float("nan") for kind in KINDS}
        else:
            memory = {kind: peak_memory(kind, size, args.batch, args.init) for kind in KINDS}
        memory_ratios[size] = memory["ours"] / memory["plain"]
        print(f"{size:>5} | {median['plain']:>11.3f} {median['ours']:>10.3f} {median['stock']:>11.3f} | "
              f"{median['ours'] / median['plain']:>10.2f} {median['stock'] / median['ours']:>10.2f} | "
              f"{memory['plain']:>13.0f} {memory['ours']:>7.0f} {memory['stock']:>7.0f} "
              f"{memory['ours'] / memory['plain']:>10.2f} | {difference:>10.1e} | {errors['ours']:>12.1e} "
              f"{errors['stock']:>8.1e}", flush=True)
    print("\nmedians over interleaved runs; peak MB is what one batch adds to the process (fresh subprocess each);\n"
          "ours-stock: max over images of max|ours - stock| / max|stock| in float32; f64 err: the same against\n"
          "stock zennit in float64 on the first images (rounding error of each float32 implementation)")
    measured = {size: ratio for size, ratio in memory_ratios.items() if ratio == ratio}  # skip NaN (--no-memory)
    if measured:
        worst = max(measured.values())
        print(f"\npeak memory of our LRP over the plain gradient: at most {worst:.2f}x "
              f"({'OK' if worst <= MEMORY_TARGET else 'FAIL'}: target <= {MEMORY_TARGET}x)")


if __name__ == "__main__":
    main()
