"""The gallery's figures and readings, from a quick demo run made by the docs build, so that they cannot drift.

At the start of an HTML build this extension makes sure that ``docs/_build/demo`` holds the results of
``lrp-faces demo --quick`` for the code being documented: it reuses them when the stamp written beside them
(``docs-demo.json``) names the same digest of the package's code (docstrings and comments aside), and otherwise
runs the demo again from scratch (the demo zoo's checkpoints stay cached in ``$LRP_FACES_CACHE`` or
``~/.cache/lrp_faces``). The pages then use:

``.. demo-figure:: NAME``
    A figure of the demo's report (``report/figures/NAME.png``), with the options and caption of ``figure``.
``.. demo-reading:: NAME``
    The report's own reading of that figure (:mod:`lrp_faces.report.readings`), as a "This run." paragraph.
``.. demo-summary::``
    One sentence on what the run computed: models, images, image size, method and time.

Other builders (doctest, linkcheck) do not run the demo; there the directives produce nothing.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.parsers.rst.directives.images import Figure
from docutils.statemachine import StringList
from sphinx.errors import ExtensionError
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

STAMP = "docs-demo.json"
COMMAND = ("demo", "--quick", "--no-progress", "--quiet", "--threads", "1")


def _code_without_docstrings(source: bytes) -> str:
    """The syntax tree of a module, without its docstrings, comments or layout, as text."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def source_digest() -> str:
    """SHA-256 over the code of every Python module of the lrp_faces package being documented.

    Docstrings, comments and layout do not count, so that editing the documentation does not rerun the demo.
    """
    package = Path(importlib.util.find_spec("lrp_faces").origin).resolve().parent
    digest = hashlib.sha256()
    for file in sorted(package.rglob("*.py")):
        digest.update(file.relative_to(package).as_posix().encode())
        digest.update(b"\0")
        digest.update(_code_without_docstrings(file.read_bytes()).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def demo_directory(app) -> Path:
    return (Path(app.srcdir) / app.config.demo_gallery_dir).resolve()


def _stamp(directory: Path) -> dict:
    try:
        return json.loads((directory / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def ensure_demo(app) -> None:
    """Run ``lrp-faces demo --quick`` into the demo directory unless its results are those of this source."""
    if app.builder.format != "html":
        return
    directory = demo_directory(app)
    digest = source_digest()
    stamp = _stamp(directory)
    if stamp.get("source_digest") == digest and (directory / "report" / "index.html").is_file():
        logger.info(f"demo gallery: reusing {directory} (run {stamp.get('finished')}, {stamp.get('seconds')} s)")
        return
    if directory.exists():
        shutil.rmtree(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "lrp_faces.cli", *COMMAND, "--out", str(directory)]
    logger.info(f"demo gallery: running lrp-faces {' '.join(COMMAND)} --out {directory}")
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = round(time.perf_counter() - started, 1)
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr)[-4000:]
        raise ExtensionError(f"`lrp-faces {' '.join(COMMAND)}` failed (exit {completed.returncode}) after "
                             f"{seconds} s; the gallery cannot be drawn:\n{output}")
    stamp = {"source_digest": digest, "command": ["lrp-faces", *COMMAND], "seconds": seconds,
             "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    (directory / STAMP).write_text(json.dumps(stamp, indent=1), encoding="utf-8")
    logger.info(f"demo gallery: the demo ran in {seconds} s")


def _runs_demo(directive: SphinxDirective) -> bool:
    return directive.env.app.builder.format == "html"


class DemoFigure(Figure):
    """``.. demo-figure:: relevance_grid``: a figure of the demo's report, with the options of ``figure``."""

    option_spec = {**Figure.option_spec, "alt": directives.unchanged}

    def run(self):
        env = self.state.document.settings.env
        if env.app.builder.format != "html":
            return []
        name = self.arguments[0]
        from lrp_faces.report import FIGURES

        if name not in FIGURES:
            raise self.error(f"demo-figure: unknown figure {name!r}; the report draws {', '.join(FIGURES)}")
        relative = Path(env.app.config.demo_gallery_dir) / "report" / "figures" / f"{name}.png"
        if not (Path(env.srcdir) / relative).is_file():
            raise self.error(f"demo-figure: the demo run did not draw {relative}")
        self.arguments[0] = "/" + relative.as_posix()  # "/..." is relative to the source directory
        return super().run()


READERS = {
    "relevance_grid": ("grid_reading", "cube"),
    "masking_curves": ("curves_reading", "masking", "masking_lerf"),
    "generalization_heatmap": ("generalization_reading", "masking"),
    "asymmetry_heatmap": ("asymmetry_reading", "masking"),
    "generalization_by_relation": ("relation_reading", "masking"),
    "similarity_by_relation": ("similarity_reading", "similarity"),
    "region_relevance": ("regions_reading", "regions"),
    "method_comparison": ("methods_reading", "methods"),
    "rsa_bars": ("rsa_reading", "rsa"),
}
"""Figure -> the function of :mod:`lrp_faces.report.readings` that reads it, and the results it takes (as the
report calls it)."""
_READINGS: dict[tuple[str, str], dict[str, str]] = {}


def readings(directory: Path) -> dict[str, str]:
    """The report's reading of every figure of the demo run in ``directory`` (computed once per run)."""
    key = (str(directory), str(_stamp(directory).get("finished")))
    if key not in _READINGS:
        import xarray as xr

        from lrp_faces import cube
        from lrp_faces.report import RESULT_FILES
        from lrp_faces.report import readings as report_readings

        results = {}
        try:
            for result, name in RESULT_FILES.items():
                if result == "cube":
                    results[result] = cube.open(directory / name)
                else:
                    with xr.open_dataset(directory / name, engine="netcdf4") as dataset:
                        results[result] = dataset.load()
            _READINGS[key] = {figure: getattr(report_readings, function)(*(results[name] for name in names))
                              for figure, (function, *names) in READERS.items()}
        finally:
            if "cube" in results:
                results["cube"].close()
    return _READINGS[key]


class DemoReading(SphinxDirective):
    """``.. demo-reading:: masking_curves``: "This run." and the report's reading of the figure."""

    required_arguments = 1

    def run(self):
        if not _runs_demo(self):
            return []
        texts = readings(demo_directory(self.env.app))
        if self.arguments[0] not in texts:
            raise self.error(f"demo-reading: no reading for {self.arguments[0]!r}; there are {', '.join(texts)}")
        text = texts[self.arguments[0]]
        paragraph = nodes.paragraph()
        paragraph += nodes.strong("This run.", "This run.")
        paragraph += nodes.Text(" " + text)
        return [paragraph]


class DemoSummary(SphinxDirective):
    """``.. demo-summary::``: what the demo run computed, from its cube and stamp."""

    def run(self):
        if not _runs_demo(self):
            return []
        from lrp_faces import cube

        directory = demo_directory(self.env.app)
        with cube.open(directory / "cube") as maps:
            models = [spec.id for spec in maps.lrp.models()]
            images, height, width = (maps.sizes[dim] for dim in ("image", "y", "x"))
            method = maps.attrs.get("method", "?")
        stamp = _stamp(directory)
        text = (f"The figures below come from the run of ``lrp-faces demo --quick`` made while these pages were built "
                f"({stamp.get('finished', '?')}, {stamp.get('seconds', '?')} s): {len(models)} models "
                f"({', '.join(models)}), explaining {images} held-out synthetic faces of {height} × {width} pixels "
                f"with the method ``{method}``.")
        container = nodes.container()
        self.state.nested_parse(StringList([text], source="demo-summary"), self.content_offset, container)
        return container.children


def reread_demo_pages(app, env, added, changed, removed):
    """The pages with demo figures and readings show the last run: read them again on every build."""
    return [docname for docname in app.config.demo_gallery_pages if docname in env.found_docs]


def setup(app):
    app.add_config_value("demo_gallery_dir", "_build/demo", "env")
    app.add_config_value("demo_gallery_pages", ["index", "gallery"], "env")
    app.connect("builder-inited", ensure_demo, priority=400)  # before the tutorials, which load its zoo
    app.add_directive("demo-figure", DemoFigure)
    app.add_directive("demo-reading", DemoReading)
    app.add_directive("demo-summary", DemoSummary)
    app.connect("env-get-outdated", reread_demo_pages)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
