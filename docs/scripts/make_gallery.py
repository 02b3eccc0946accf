"""Render the gallery's figures, docs/images/gallery/*.png, from a ``lrp-faces demo --quick`` run.

Run from the repository root::

    python docs/scripts/make_gallery.py                      # runs `lrp-faces demo --quick` in a temporary folder
    python docs/scripts/make_gallery.py --results study      # reuses an existing results folder (demo or run)

The figures are the report's own (``report/figures/*.png``), scaled down to at most ``--width`` pixels and stored
with an adaptive, dithered 256-colour palette, so that the committed files stay small. The demo trains its zoo once
and caches it (``$LRP_FACES_CACHE`` or ``~/.cache/lrp_faces``).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from lrp_faces.report import FIGURES  # the report's figures, in the order the gallery shows them

OUTPUT = Path(__file__).resolve().parents[1] / "images" / "gallery"


def run_demo(out: Path) -> None:
    """``lrp-faces demo --quick --out OUT`` in this interpreter's environment."""
    command = [sys.executable, "-c", "from lrp_faces.cli import main; main()", "demo", "--quick", "--out", str(out),
               "--no-progress"]
    print("running:", "lrp-faces", *command[3:], flush=True)
    subprocess.run(command, check=True)


def shrink(source: Path, target: Path, width: int) -> tuple[int, int]:
    """Copy ``source`` to ``target``, at most ``width`` pixels wide, with an adaptive, dithered 256-colour palette."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
            target, optimize=True)
        return image.size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, help="an existing results folder (default: run the quick demo)")
    parser.add_argument("--width", type=int, default=900, help="largest width of a gallery image in pixels")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lrp_faces_gallery_") as temporary:
        results = arguments.results
        if results is None:
            results = Path(temporary) / "demo"
            run_demo(results)
        figures = results / "report" / "figures"
        missing = [name for name in FIGURES if not (figures / f"{name}.png").is_file()]
        if missing:
            print(f"{figures} lacks {', '.join(missing)}.png; is {results} a complete results folder?",
                  file=sys.stderr)
            return 1
        if OUTPUT.exists():
            shutil.rmtree(OUTPUT)
        OUTPUT.mkdir(parents=True)
        for name in FIGURES:
            target = OUTPUT / f"{name}.png"
            width, height = shrink(figures / f"{name}.png", target, arguments.width)
            print(f"wrote {target} ({width}x{height}, {target.stat().st_size // 1024} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
