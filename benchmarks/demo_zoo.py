"""Train the demo zoo in a fresh temporary cache directory: wall time, then every model's held-out accuracy.

Requirements checked (exit status 1 if one fails): held-out accuracy >= 90 % for every gender model and >= 80 % for
every identity model, and, unless ``--quick``, a median training time <= 180 s. Each repeat trains from scratch in
its own fresh cache directory; the time of loading the cached zoo again (``demo_zoo`` on a warm cache, which checks
every file) is reported too. The machine load (``os.getloadavg``) is printed before and after, since other processes
inflate the time.

    python benchmarks/demo_zoo.py                 # the default demo zoo, once
    python benchmarks/demo_zoo.py --repeats 3     # median of three fresh trainings
    python benchmarks/demo_zoo.py --quick         # DemoSettings.quick(), the CI smoke zoo (no requirements)
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

import torch

from lrp_faces.zoo import DemoSettings, accuracy, demo_study_data, demo_zoo

REQUIRED = {"gender": 0.90, "identity": 0.80}
TIME_LIMIT_S = 180.0


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def cpu_seconds() -> float:
    """CPU time of this process (all threads): what the training costs whatever else runs on the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="fresh trainings (default 1); the median time counts")
    parser.add_argument("--quick", action="store_true", help="DemoSettings.quick(); report only, no requirements")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    arguments = parser.parse_args()
    settings = DemoSettings.quick() if arguments.quick else DemoSettings()
    print(f"{'quick' if arguments.quick else 'default'} demo zoo: {settings}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; {load()}")
    times, reload_times, results = [], [], []
    for repeat in range(arguments.repeats):
        with tempfile.TemporaryDirectory(prefix="lrp_faces_demo_") as cache:
            started, cpu = time.perf_counter(), cpu_seconds()
            zoo = demo_zoo(settings, cache_dir=cache, progress=arguments.progress)
            times.append(time.perf_counter() - started)
            cpu = cpu_seconds() - cpu
            started = time.perf_counter()
            zoo = demo_zoo(settings, cache_dir=cache, progress=arguments.progress)
            reload_times.append(time.perf_counter() - started)
            print(f"repeat {repeat + 1}: trained in {times[-1]:.1f} s ({cpu:.0f} CPU s), cached zoo loaded in "
                  f"{reload_times[-1]:.2f} s; {load()}", flush=True)
            if repeat == 0:
                _, test = demo_study_data(settings)
                results = [(spec, accuracy(zoo[spec], test, spec.task)) for spec in zoo]
    _, test = demo_study_data(settings)
    print(f"\nheld-out accuracy ({len(test)} test images: {settings.study_identities} identities x "
          f"{settings.test_images_per_identity}):")
    failures = []
    for spec, value in results:
        ok = value >= REQUIRED[spec.task]
        print(f"  {spec.name:28s} {value:6.1%}{'' if ok else f'  < {REQUIRED[spec.task]:.0%} required'}")
        if not ok:
            failures.append(f"{spec.name}: {value:.1%}")
    for task in REQUIRED:
        values = [value for spec, value in results if spec.task == task]
        print(f"  {task:9s} min {min(values):.1%}  median {statistics.median(values):.1%}  max {max(values):.1%}")
    median = statistics.median(times)
    print(f"\ntraining time: median {median:.1f} s over {len(times)} run(s) {[round(t, 1) for t in times]}; "
          f"cached load: median {statistics.median(reload_times):.2f} s")
    if not arguments.quick and median > TIME_LIMIT_S:
        failures.append(f"training time {median:.1f} s > {TIME_LIMIT_S:.0f} s")
    if arguments.quick:
        return 0
    print("FAIL: " + "; ".join(failures) if failures else "OK: every requirement met")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
