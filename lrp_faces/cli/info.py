"""``lrp-faces info PATH``: what a cube, a result file, a results directory or a study file holds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from .. import cube as cubes
from ..formatting import format_setting
from ..netcdf import NetCDFFileError, read_attributes
from .study import STEP_ATTR, Study, StudyError, read_result
from .summary import best_method_lines, generalization_lines, rsa_lines, self_masking_lines

ATTR_WIDTH = 100
KNOWN_RESULTS = {"summary_generalization_index": "masking generalisation (masking.generalization)",
                 "relation_mean": "map similarity (analysis.similarity)",
                 "share": "region relevance (analysis.region_relevance)",
                 "relevance_mass_accuracy_mean": "ground truth (analysis.ground_truth)",
                 "value": "method comparison (analysis.method_comparison)",
                 "correlation": "RSA against human dissimilarities (analysis.compare_with_humans)",
                 "accuracy_auc": "self-masking curves per model (masking.curves; masking_lerf.nc: LeRF)"}


def _plain(value):
    """An attribute as plain Python; float32 (and float16) values by their own shortest decimal, not widened to
    float64 noise (``np.float32(0.15).item()`` is 0.15000000596046448)."""
    if not isinstance(value, (np.ndarray, np.generic)):
        return value
    array = np.asarray(value)
    if array.dtype.kind == "f" and array.dtype.itemsize < 8:
        array = array.astype(str).astype(np.float64)  # numpy writes each value as its shortest round-trip decimal
    return array.tolist()


def _short(value, width: int = ATTR_WIDTH) -> str:
    text = format_setting(_plain(value))
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


NETCDF_SIGNATURES = (b"\x89HDF\r\n\x1a\n", b"CDF\x01", b"CDF\x02", b"CDF\x05")
"""The first bytes of an HDF5 (NetCDF4) file and of the classic NetCDF formats."""


def _netcdf_signature(path: Path) -> bool:
    """Whether the file starts like a NetCDF file (so that one that cannot be read is damaged, not something else)."""
    try:
        with path.open("rb") as file:
            start = file.read(8)
    except OSError:
        return False
    return start.startswith(NETCDF_SIGNATURES)


def _cube_files(directory: Path) -> list[Path]:
    """The complete model files of a cube directory (temporary files are hidden, ``.name.nc.tmp``)."""
    return sorted(path for path in directory.glob("*.nc") if path.is_file() and not path.name.startswith("."))


def _dims(dataset: xr.Dataset) -> str:
    return ", ".join(f"{name} {size}" for name, size in dataset.sizes.items())


def _values(coord: xr.DataArray, shown: int = 6) -> str:
    values = [str(value) for value in np.asarray(coord.values).ravel()]
    return ", ".join(values[:shown]) + (f", … ({len(values)} in all)" if len(values) > shown else "")


def describe_cube(path: Path) -> list[str]:
    """Dims, models, method, images, accuracy per model and versions of a cube directory or file."""
    cube = cubes.open(path)
    try:
        files = len(_cube_files(path)) if path.is_dir() else 1
        attrs = cube.attrs
        models = json.loads(attrs.get("models", "{}"))
        lines = [f"Relevance cube: {path} ({files} file{'s' if files != 1 else ''})",
                 f"  dims: {_dims(cube)}",
                 f"  models ({len(models)}): {', '.join(sorted(models))}",
                 f"  method: {attrs.get('method')} {attrs.get('method_params', '')}; contrastive: "
                 f"{bool(attrs.get('contrastive'))}; canonizers: {attrs.get('canonizers', '')}",
                 f"  images: {cube.sizes['image']} ({_values(cube['image'], 3)}), "
                 f"{attrs.get('input_height')}x{attrs.get('input_width')} px"]
        correct = cube["correct"].load()
        accuracy = []
        for pretraining in cube["pretraining"].values:
            for task in cube["task"].values:
                for seed in cube["seed"].values:
                    where = {"pretraining": pretraining, "task": task, "seed": seed}
                    if "computed" in cube.coords and not bool(cube["computed"].sel(where)):
                        continue
                    accuracy.append(f"{pretraining}/{task}/{seed} {float(correct.sel(where).mean()):.1%}")
        lines.append(f"  accuracy on these images: {', '.join(accuracy)}")
        versions = ", ".join(f"{key.removesuffix('_version')} {attrs[key]}" for key in sorted(attrs)
                             if key.endswith("_version") and key != "cube_format_version")
        lines.append(f"  created: {attrs.get('created', '?')}; versions: {versions}")
        return lines
    finally:
        cube.close()


def describe_result(path: Path) -> list[str]:
    """Dims, variables, coordinates and attributes of a result file, and its key numbers when it is a known one."""
    result = read_result(path)
    kind = next((text for variable, text in KNOWN_RESULTS.items() if variable in result), "NetCDF file")
    lines = [f"Result file: {path} ({kind})", f"  dims: {_dims(result)}"]
    lines.append("  variables:")
    for name, variable in result.data_vars.items():
        lines.append(f"    {name} ({', '.join(variable.dims)}) {variable.dtype}")
    labelled = [name for name in result.coords if result[name].dtype.kind in "OUS" and result[name].ndim == 1]
    for name in labelled:
        lines.append(f"  {name}: {_values(result[name])}")
    attrs = {key: value for key, value in result.attrs.items() if key != STEP_ATTR}
    if attrs:
        lines.append("  attributes:")
        lines += [f"    {key} = {_short(value)}" for key, value in attrs.items()]
    lines.append(f"  step settings recorded: {'yes' if STEP_ATTR in result.attrs else 'no'}")
    for describe in (generalization_lines, self_masking_lines, best_method_lines, rsa_lines):
        lines += describe(result)
    return lines


def describe_results_dir(path: Path) -> list[str]:
    """The files of a study's results directory and its summary."""
    from .runner import CUBE_DIR, RESULT_FILES, STUDY_JSON
    from .summary import summary_lines
    lines = [f"Results directory: {path}"]
    record = {}
    if (path / STUDY_JSON).is_file():
        try:
            record = json.loads((path / STUDY_JSON).read_text(encoding="utf-8"))
        except ValueError:
            lines.append(f"  {STUDY_JSON}: unreadable")
    if record:
        lines.append(f"  study: {record.get('name')} (updated {record.get('updated', '?')})")
        timings = record.get("timings", {})
        if timings:
            lines.append("  steps: " + ", ".join(f"{step} {entry.get('status')} ({entry.get('seconds')} s)"
                                                 for step, entry in timings.items() if isinstance(entry, dict)))
    cube_files = _cube_files(path / CUBE_DIR) if (path / CUBE_DIR).is_dir() else []
    lines.append(f"  {CUBE_DIR}/: {len(cube_files)} model files" if cube_files else f"  {CUBE_DIR}/: missing")
    for step, name in RESULT_FILES.items():
        file = path / name
        lines.append(f"  {name}: {file.stat().st_size / 1e6:.1f} MB" if file.is_file() else f"  {name}: missing")
    index = path / "report" / "index.html"
    lines.append(f"  report: {index}" if index.is_file() else "  report: missing")
    return lines + summary_lines(path)


def describe_study(path: Path) -> list[str]:
    """The resolved settings of a study file, after checking it."""
    study = Study.from_toml(path)
    lines = [f"Study file: {path} (valid)"]

    def walk(value, prefix: str):
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(item, f"{prefix}.{key}" if prefix else key)
        else:
            lines.append(f"  {prefix} = {_short(value)}")
    walk(study.to_dict(), "")
    return lines


def describe(path: str | Path) -> list[str]:
    """A summary of ``path``: a cube directory or file, a result .nc file, a results directory or a study TOML."""
    from .runner import CUBE_DIR, RESULT_FILES, STUDY_JSON
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    if path.is_dir():
        if (path / STUDY_JSON).is_file() or (path / CUBE_DIR).is_dir() or any(
                (path / name).is_file() for name in RESULT_FILES.values()):
            return describe_results_dir(path)
        if _cube_files(path):
            return describe_cube(path)
        raise StudyError(f"{str(path)!r} is neither a cube directory (*.nc model files) nor a results directory "
                         f"(study.json, cube/, *.nc results)")
    if path.suffix == ".toml":
        return describe_study(path)
    try:
        attrs = read_attributes(path, verify=False)
    except NetCDFFileError:
        if path.suffix == ".nc" or _netcdf_signature(path):
            raise  # a damaged or truncated NetCDF file: the message names it and says what to do
        raise StudyError(f"{str(path)!r} is not a NetCDF file, a directory or a study TOML; expected a cube, a "
                         f"result .nc file, a results directory or a .toml study") from None
    if attrs.get("cube_format") == cubes.FORMAT:
        return describe_cube(path)
    return describe_result(path)
