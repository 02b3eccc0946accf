"""``write_report``: the page, its sections and the atomic writing of the page and its figures."""
from __future__ import annotations

import datetime
import html
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import xarray as xr
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from .. import plots
from ..errors import LRPFacesError
from ..files import write_bytes_atomic, write_text_atomic
from ..formatting import fraction_label
from ..result_layout import is_stand_in, masking_mode
from .readings import (asymmetry_reading, curves_reading, generalization_reading, grid_reading, methods_reading,
                        regions_reading, relation_reading, rsa_reading, similarity_reading)
from .tables import (ground_truth_table, methods_table, model_accuracy, relation_table, rsa_table, similarity_table,
                     study_tables, table)

__all__ = ["write_report", "ReportError", "RESULT_FILES", "FIGURES"]

RESULT_FILES = {"cube": "cube", "masking": "masking.nc", "masking_lerf": "masking_lerf.nc",
                "similarity": "similarity.nc", "regions": "regions.nc", "methods": "methods.nc", "rsa": "rsa.nc"}
"""Result of each section -> its path in the results directory (``masking_lerf`` joins the masking section)."""
FIGURES = ("relevance_grid", "masking_curves", "generalization_heatmap", "asymmetry_heatmap",
           "generalization_by_relation", "similarity_by_relation", "region_relevance", "method_comparison",
           "rsa_bars")
"""Figure files the report writes (``figures/{name}.png`` and ``.svg``)."""
SECTIONS = {"settings": "Study settings", "zoo": "Model zoo", "maps": "Relevance maps",
            "masking": "Masking and generalisation", "similarity": "Similarity of maps",
            "regions": "Face regions and ground truth", "methods": "Attribution methods",
            "rsa": "Comparison with human similarity", "files": "Result files"}
"""Anchor -> title of each section of the page, in page order."""
PNG_DPI = 130


class ReportError(LRPFacesError, ValueError):
    """A results directory that is missing, unreadable or holds no results."""


CSS = """
:root { --ink: #1d232b; --muted: #5b6673; --line: #d9dee4; --accent: #0b5cad; --warn-bg: #fff4dc; --warn: #8a4b00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: #f4f6f8; }
header { background: #14304f; color: #fff; padding: 28px 0 22px; }
header .wrap p { color: #c8d6e6; margin: 4px 0 0; }
header h1 { margin: 0; font-size: 26px; letter-spacing: .2px; }
.wrap { max-width: 1120px; margin: 0 auto; padding: 0 24px; }
nav { background: #fff; border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 1; }
nav .wrap { display: flex; flex-wrap: wrap; gap: 4px 18px; padding-top: 9px; padding-bottom: 9px; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; }
nav a:hover { text-decoration: underline; }
main { padding: 8px 0 40px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 6px 24px 18px;
          margin: 18px 0; }
h2 { font-size: 20px; margin: 16px 0 8px; border-bottom: 2px solid #e7ebf0; padding-bottom: 6px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
figure { margin: 14px 0 20px; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; border: 1px solid #eef1f4; }
figcaption { color: var(--ink); margin-top: 8px; font-size: 14.5px; max-width: 900px; }
figcaption a { color: var(--accent); font-size: 13px; white-space: nowrap; }
ul.findings li { margin: 4px 0; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px 5px 0; text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .path { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
              overflow-wrap: anywhere; }
.note { color: var(--muted); font-style: italic; }
.warning { background: var(--warn-bg); color: var(--warn); border: 1px solid #e8b96a; border-radius: 6px;
           padding: 8px 12px; font-weight: 600; }
.scroll { overflow-x: auto; }
details { margin: 4px 0 8px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 4px 28px; }
.card h4 { margin: 12px 0 0; font-size: 14px; text-transform: capitalize; }
.card table { font-size: 13px; width: 100%; table-layout: fixed; }
.card td, .card th { overflow-wrap: break-word; }
.card td:first-child, .card th:first-child { color: var(--muted); width: 46%; }
summary { cursor: pointer; color: var(--accent); font-size: 14px; }
footer { color: var(--muted); font-size: 13px; text-align: center; padding: 0 0 30px; }
"""


# ------------------------------------------------------------------------------------------------------ loading
def _check_directory(results_dir: str | os.PathLike) -> Path:
    if not isinstance(results_dir, (str, os.PathLike)):
        raise TypeError(f"results_dir must be a path, got {type(results_dir).__name__}")
    path = Path(results_dir).expanduser()
    if not path.exists():
        raise ReportError(f"there is no results directory at {str(path)!r}; run `lrp-faces demo --out "
                          f"{path}` or `lrp-faces run STUDY.toml --out {path}` first")
    if not path.is_dir():
        raise ReportError(f"results_dir {str(path)!r} is a file; expected the directory of a study run")
    try:
        entries = {entry.name for entry in path.iterdir()}
    except OSError as error:
        raise ReportError(f"the results directory {str(path)!r} cannot be read: {error}") from None
    if "study.json" not in entries and not any(name in entries for name in RESULT_FILES.values()):
        raise ReportError(f"{str(path)!r} holds no study results: expected study.json or one of "
                          f"{sorted(RESULT_FILES.values())}")
    return path


def _load_study(path: Path) -> tuple[dict, str | None]:
    file = path / "study.json"
    if not file.is_file():
        return {}, "study.json not found: the settings and the zoo table are not shown."
    try:
        study = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return {}, f"study.json could not be read ({error})."
    return (study, None) if isinstance(study, dict) else ({}, "study.json does not hold a JSON object.")


def _open_result(path: Path, key: str) -> tuple[xr.Dataset | None, str | None]:
    """The result of one section, loaded, or a one-line note why there is none."""
    file = path / RESULT_FILES[key]
    if not file.exists():
        return None, f"Skipped: {RESULT_FILES[key]} is not in the results directory."
    try:
        if key == "cube":
            from .. import cube
            return cube.open(file), None
        with xr.open_dataset(file, engine="netcdf4") as dataset:
            result = dataset.load()
        return result, None
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        return None, f"Skipped: {RESULT_FILES[key]} could not be read ({type(error).__name__}: {error})."


# ------------------------------------------------------------------------------------------------------ writing
class _Page:
    """Sections of the page and the figure files made for them, held in memory until the page is complete."""

    def __init__(self, out: Path, results: Path):
        self.out, self.results = out, results
        self.figures = out / "figures"
        self.sections: list[tuple[str, str, str]] = []  # (anchor, title, body html)
        self.findings: list[str] = []
        self.files: dict[str, bytes] = {}  # figure file name -> content

    def figure(self, name: str, figure: Figure, reading: str, alt: str, finding: bool = False) -> str:
        """The HTML of a figure with its reading as the caption (and the reading's first sentence among the main
        findings); the PNG and SVG are kept for :meth:`write`."""
        for suffix in ("png", "svg"):
            content = io.BytesIO()
            figure.savefig(content, format=suffix, dpi=PNG_DPI)
            self.files[f"{name}.{suffix}"] = content.getvalue()
            figure.set_layout_engine("none")  # keep the layout of the first save instead of computing it again
        if finding:
            self.findings.append(_first_sentence(reading))
        width, height = (figure.get_size_inches() * PNG_DPI).round().astype(int)
        return (f'<figure><img src="figures/{name}.png" width="{width}" height="{height}" alt="{_e(alt)}">'
                f'<figcaption>{_e(reading)} <a href="figures/{name}.svg">SVG</a></figcaption></figure>')

    def add(self, anchor: str, body: str) -> None:
        self.sections.append((anchor, SECTIONS[anchor], body))

    def link(self, file: Path) -> str:
        relative = os.path.relpath(file, self.out)
        return f'<a class="path" href="{_e(Path(relative).as_posix())}">{_e(str(file))}</a>'

    def write(self, text: str) -> Path:
        """Write the figures, then the page, each atomically, and remove the figures of sections that are gone."""
        for name, content in self.files.items():
            write_bytes_atomic(self.figures / name, content)
        index = write_text_atomic(self.out / "index.html", text)
        for stale in self.figures.glob("*"):
            if stale.stem in FIGURES and stale.suffix in (".png", ".svg") and stale.name not in self.files:
                stale.unlink()
        return index


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _p(text: str, css: str = "") -> str:
    """A paragraph of escaped text, with an optional CSS class."""
    attribute = f' class="{css}"' if css else ""
    return f"<p{attribute}>{_e(text)}</p>"


def _first_sentence(text: str) -> str:
    head, _, _ = text.partition(". ")
    return head if head.endswith(".") else head + "."


# ----------------------------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class _Context:
    """What sections need besides their result: the study record, the faces and the LeRF curves of the models."""

    study: dict
    images: Any = None
    lerf: xr.Dataset | None = None
    lerf_note: str | None = None


def _models_section(page: _Page, study: dict, study_note: str | None, cube: xr.Dataset | None) -> None:
    settings_html, zoo_rows, zoo_headers = study_tables(study)
    has_accuracy = any(header == "accuracy" for header in zoo_headers)
    accuracy = model_accuracy(cube) if cube is not None and not has_accuracy else {}
    if accuracy:
        zoo_headers = zoo_headers + ["accuracy on the explained images"] if zoo_rows else \
            ["model", "accuracy on the explained images"]
        if zoo_rows:
            zoo_rows = [row + [accuracy.get(row[0], "n/a")] for row in zoo_rows]
        else:
            zoo_rows = [[name, value] for name, value in accuracy.items()]
    body = (_p(study_note, "note") if study_note else "") + settings_html
    page.add("settings", body or _p("No settings recorded.", "note"))
    page.add("zoo", table(zoo_headers, zoo_rows) if zoo_rows else
             _p("No zoo table: neither study.json nor the cube lists the models.", "note"))


def _maps_body(page: _Page, cube: xr.Dataset, context: _Context) -> str:
    body = page.figure("relevance_grid", plots.relevance_grid(cube, context.images), grid_reading(cube),
                       "relevance maps overlaid on faces, images by models", finding=True)
    if context.images is None:
        body += _p("The faces are not shown under the maps: the report was written without the images.", "note")
    return body


def _masking_curves_figure(page: _Page, result: xr.Dataset, context: _Context) -> str:
    """The masking curves, with the models' LeRF curves where ``masking_lerf.nc`` matches the result, and a note
    where it is missing or does not match."""
    lerf, lerf_note = context.lerf, context.lerf_note
    curves = None
    if lerf is not None:
        try:
            curves = plots.masking_curves(result, lerf=lerf)
        except (plots.PlotError, plots.PlotTypeError) as error:  # e.g. a file left from other settings
            lerf, lerf_note = None, f"The LeRF curves of {RESULT_FILES['masking_lerf']} are not drawn: {error}."
    elif str(result.attrs.get("order", "morf")) != "morf":
        lerf_note = None  # the generalisation itself masks least relevant first
    elif lerf_note is not None and "is not in the results directory" in lerf_note:
        lerf_note = (f"No LeRF curves: {RESULT_FILES['masking_lerf']} is not in the results directory (`lrp-faces "
                     f"mask` writes it).")
    alt = f"masking curves: accuracy and output against the {fraction_label(masking_mode(result))}"
    body = page.figure("masking_curves", curves if curves is not None else plots.masking_curves(result),
                       curves_reading(result, lerf), alt)
    return body + (_p(lerf_note, "note") if lerf_note else "")


def _masking_body(page: _Page, result: xr.Dataset, context: _Context) -> str:
    generalization = generalization_reading(result)
    page.findings.append(_first_sentence(generalization))
    body = _masking_curves_figure(page, result, context)
    body += "<h3>Generalisation of maps between models</h3>"
    body += page.figure("generalization_heatmap", plots.generalization_heatmap(result), generalization,
                        "heatmap of the generalisation index, source by target model")
    body += page.figure("generalization_by_relation", plots.generalization_by_relation(result),
                        relation_reading(result), "generalisation index by relation with confidence intervals")
    body += relation_table(result)
    body += "<h3>Asymmetry</h3>"
    return body + page.figure("asymmetry_heatmap", plots.asymmetry_heatmap(result), asymmetry_reading(result),
                              "heatmap of the asymmetry of the generalisation index")


def _similarity_body(page: _Page, result: xr.Dataset, context: _Context) -> str:
    return page.figure("similarity_by_relation", plots.similarity_by_relation(result), similarity_reading(result),
                       "map similarity by relation with confidence intervals", finding=True) + similarity_table(result)


def _regions_body(page: _Page, result: xr.Dataset, context: _Context) -> str:
    body = ""
    if "share" in result:
        figure = plots.region_relevance(result, task_regions=_task_regions(context.study, result))
        body += page.figure("region_relevance", figure, regions_reading(result),
                            "bar chart of the share of relevance per face region", finding=True)
    ground_truth = ground_truth_table(result)
    return body + (("<h3>Ground truth</h3>" + ground_truth) if ground_truth else _p(
        "No ground-truth metrics: the data set has no region masks.", "note"))


def _task_regions(study: dict, result: xr.Dataset) -> dict | None:
    """The synthetic faces' task regions, when the study ran on them and the regions are theirs."""
    from ..faces import REGIONS, TASK_REGIONS
    settings = study.get("settings")
    dataset = settings.get("dataset") if isinstance(settings, dict) else None
    synthetic = isinstance(dataset, dict) and dataset.get("kind") in ("demo", "synthetic")
    regions = {str(value) for value in result["region"].values}
    return dict(TASK_REGIONS) if synthetic and regions <= set(REGIONS) else None


def _methods_body(page: _Page, result: xr.Dataset, context: _Context) -> str:
    return page.figure("method_comparison", plots.method_comparison(result), methods_reading(result),
                       "attribution methods compared on each metric", finding=True) + methods_table(result)


def _rsa_body(page: _Page, result: xr.Dataset, context: _Context) -> str:
    warning = _p(f"Not human data: the “human” RDM of this study is {result.attrs.get('human_source')}.",
                 "warning") if is_stand_in(result) else ""
    return warning + page.figure("rsa_bars", plots.rsa_bars(result), rsa_reading(result),
                                 "bar chart of RDM correlations with humans", finding=True) + rsa_table(result)


SECTION_BODIES: dict[str, Callable[[_Page, xr.Dataset, _Context], str]] = {
    "cube": _maps_body, "masking": _masking_body, "similarity": _similarity_body, "regions": _regions_body,
    "methods": _methods_body, "rsa": _rsa_body}
"""The body of the section of each result, drawn when the result is there."""
SECTION_OF = {"cube": "maps"}
"""The anchor of each result's section where it is not the result's key."""


def _files_section(page: _Page, found: dict[str, bool]) -> None:
    rows = []
    for key, name in RESULT_FILES.items():
        file = page.results / name
        rows.append([key, page.link(file) if found[key] else f'<span class="path">{_e(file)}</span>',
                     "present" if found[key] else "missing"])
    rows.append(["settings", page.link(page.results / "study.json") if (page.results / "study.json").is_file()
                 else _e(page.results / "study.json"), "present" if (page.results / "study.json").is_file()
                 else "missing"])
    page.add("files", table(["result", "path", "status"], rows, raw_columns=(1,)))


# -------------------------------------------------------------------------------------------------------- page
def _render(page: _Page, title: str, subtitle: str) -> str:
    navigation = "".join(f'<a href="#{anchor}">{_e(name)}</a>' for anchor, name, _ in page.sections)
    findings = "".join(f"<li>{_e(text)}</li>" for text in page.findings)
    summary = (f'<section id="findings"><h2>Main findings</h2><ul class="findings">{findings}</ul></section>'
               if findings else "")
    sections = "".join(f'<section id="{anchor}"><h2>{_e(name)}</h2>{body}</section>'
                       for anchor, name, body in page.sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f'<header><div class="wrap"><h1>{_e(title)}</h1><p>{_e(subtitle)}</p></div></header>'
            f'<nav><div class="wrap">{navigation}</div></nav>'
            f'<main><div class="wrap">{summary}{sections}</div></main>'
            f'<footer>Written by lrp_faces.report on {_e(datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))}'
            f"</footer></body></html>\n")


def write_report(results_dir: str | os.PathLike, out: str | os.PathLike | None = None, progress: bool = False, *,
                 images: Any = None) -> Path:
    """Write a static HTML report of a study's results directory.

    Parameters
    ----------
    results_dir : str or PathLike
        The output directory of a study run: ``study.json``, ``cube/``, ``masking.nc`` (with ``masking_lerf.nc``,
        whose LeRF curves join the masking curves when present), ``similarity.nc``, ``regions.nc``, ``methods.nc``,
        ``rsa.nc``. Sections whose file is missing are skipped with a note.
    out : str or PathLike, optional
        Directory of the report (default ``results_dir/report``); gets ``index.html`` and ``figures/``.
    progress : bool
        Show a progress bar over the sections.
    images : optional
        The faces under the relevance maps: a dataset with ``.images`` and ``.image_ids`` (e.g. the study's
        SyntheticFaces), or anything :func:`lrp_faces.plots.relevance_grid` takes. Without it the maps are drawn
        alone.

    Returns
    -------
    Path
        The written ``index.html``. The page and its figures are made in memory first and then written, each file
        atomically, so that a failure (a result that cannot be drawn, a full disk) leaves the previous report.

    Raises
    ------
    ReportError
        ``results_dir`` does not exist, is not a readable directory or holds no results.
    """
    results = _check_directory(results_dir)
    out = Path(out).expanduser() if out is not None else results / "report"
    page = _Page(out, results)
    study, study_note = _load_study(results)
    found: dict[str, bool] = {}
    cube = None
    keys = list(SECTION_BODIES)  # masking_lerf is read with masking
    try:
        with tqdm(total=len(keys), desc="report", unit="section", disable=not progress) as bar:
            for key in keys:
                bar.set_postfix_str(key)
                result, note = _open_result(results, key)
                found[key] = result is not None
                context = _Context(study, images)
                if key == "cube":
                    cube = result
                    _models_section(page, study, study_note, cube)
                elif key == "masking":
                    lerf, lerf_note = _open_result(results, "masking_lerf")
                    found["masking_lerf"] = lerf is not None
                    context = _Context(study, images, lerf, lerf_note)
                anchor = SECTION_OF.get(key, key)
                page.add(anchor, _p(note, "note") if result is None else SECTION_BODIES[key](page, result, context))
                bar.update()
    finally:
        if cube is not None:
            cube.close()
    _files_section(page, found)
    title = str(study.get("title") or study.get("name") or "lrp-faces study report")
    return page.write(_render(page, title, f"Results in {results.resolve()}"))
