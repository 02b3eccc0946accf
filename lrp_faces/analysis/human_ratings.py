"""Human RDMs: human dissimilarity ratings read from a CSV file, or the demo's stand-in for them.

:func:`load_human_rdm` reads a square matrix or a long table of pairs (optionally per rater), checks it (finite,
symmetric, zero diagonal, every pair given once, ids among the cube's) and returns it as an RDM; errors name the file,
the line and what was expected. The demo has no human ratings: :func:`stand_in_human_rdm` gives the synthetic faces'
parameter-space distances, labelled as a stand-in (attribute ``human_source``) wherever they go.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..faces import parameter_dissimilarity
from ._rsa_common import RDM_DIMS, SHOWN, HumanRatingsError, RSATypeError, check_square, few
from ._common import face_data

__all__ = ["load_human_rdm", "stand_in_human_rdm", "STAND_IN_SOURCE"]

STAND_IN_SOURCE = "synthetic parameter-space distances (a stand-in for human ratings)"
"""The ``human_source`` of :func:`stand_in_human_rdm`: no human made these judgements."""
LONG_COLUMNS = ("image_a", "image_b", "dissimilarity")


def stand_in_human_rdm(dataset: Any, metric: str = "euclidean") -> xr.DataArray:
    """The synthetic faces' parameter-space distances, as an RDM that *stands in* for human ratings in the demo.

    No human made these judgements (see :func:`lrp_faces.faces.parameter_dissimilarity`); the attributes
    ``human_source`` (:data:`STAND_IN_SOURCE`) and ``stand_in="yes"`` say so, and :func:`compare_with_humans`
    carries them into its result.

    Parameters
    ----------
    dataset
        Any face data (see :func:`lrp_faces.faces.as_face_data`) of synthetic faces, which hold the generative
        parameters: :class:`~lrp_faces.faces.SyntheticFaces` or a view of them.
    metric : {"euclidean", "correlation"}

    Raises
    ------
    RSATypeError
        ``dataset`` is not face data, or its images have no generative parameters (real faces, a plain pair).
    """
    data = face_data(dataset, RSATypeError, RSATypeError)
    if not hasattr(data, "parameters") or not hasattr(data, "parameter_names"):
        raise RSATypeError("dataset: its images have no generative parameters, so there is no stand-in for human "
                           "ratings (only synthetic faces have one); give human ratings with load_human_rdm")
    ids = data.image_ids
    values = np.asarray(parameter_dissimilarity(data, metric), dtype=np.float64)
    return xr.DataArray(values, dims=RDM_DIMS, coords={"image_a": ids, "image_b": ids}, name="dissimilarity",
                        attrs={"human_source": STAND_IN_SOURCE, "stand_in": "yes",
                               "long_name": f"stand-in for human dissimilarity: {metric} distance of the synthetic "
                                            f"faces' z-scored generative parameters (not human ratings)",
                               "source": f"lrp_faces.faces.parameter_dissimilarity(metric={metric!r})"})


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, stripped cells) of each non-blank row of a CSV file."""
    if not path.exists():
        raise HumanRatingsError(f"{path}: no such file; expected a CSV of human dissimilarities (square with image "
                                f"ids as header and index, or long with columns {', '.join(LONG_COLUMNS)}[,rater])")
    if not path.is_file():
        raise HumanRatingsError(f"{path} is not a file; expected a CSV of human dissimilarities")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise HumanRatingsError(f"{path}: is not UTF-8 text ({error}); expected a CSV file saved as UTF-8 (a binary "
                                f"file, or text in another encoding, cannot be read)") from None
    except OSError as error:
        raise HumanRatingsError(f"{path}: cannot be read: {error}") from None
    if "\x00" in text:
        raise HumanRatingsError(f"{path}: contains NUL bytes, so it is a binary file, not a CSV text file")
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        rows = [(reader.line_num, [cell.strip() for cell in row]) for row in reader]
    except csv.Error as error:
        raise HumanRatingsError(f"{path}, line {reader.line_num}: not valid CSV: {error}") from None
    rows = [(line, row) for line, row in rows if any(row)]
    if not rows:
        raise HumanRatingsError(f"{path} is empty; expected a CSV of human dissimilarities")
    return rows


def _number(text: str, path: Path, line: int, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise HumanRatingsError(f"{path}, line {line}: {where} is {text!r}; expected a number") from None
    return value


def _read_square(path: Path, rows: list[tuple[int, list[str]]]) -> tuple[np.ndarray, list[str]]:
    header = rows[0][1]
    ids = header[1:]
    if not ids or any(not image_id for image_id in ids):
        raise HumanRatingsError(f"{path}: the header must be a corner cell followed by the image ids; got "
                                f"{header[:SHOWN + 1]}")
    duplicates = sorted({image_id for image_id in ids if ids.count(image_id) > 1})
    if duplicates:
        raise HumanRatingsError(f"{path}: duplicate image ids in the header: {few(duplicates)}")
    body = rows[1:]
    for line, row in body:
        if len(row) != len(header):
            raise HumanRatingsError(f"{path}, line {line}: {len(row) - 1} values; expected a square matrix with one "
                                    f"value per header id ({len(ids)}) after the row's image id")
    if len(body) != len(ids):
        raise HumanRatingsError(f"{path}: not square: {len(body)} rows for {len(ids)} header ids; expected one row "
                                f"per image id")
    index = [row[0] for _, row in body]
    only_header, only_index = [i for i in ids if i not in index], [i for i in index if i not in ids]
    if only_header or only_index or len(set(index)) != len(index):
        repeated = sorted({image_id for image_id in index if index.count(image_id) > 1})
        raise HumanRatingsError(f"{path}: the row ids (first column) do not match the header ids: only in the "
                                f"header {few(only_header) or 'none'}; only in the rows {few(only_index) or 'none'}"
                                + (f"; repeated rows {few(repeated)}" if repeated else ""))
    values = np.empty((len(ids), len(ids)))
    for (line, row), image_id in zip(body, index):
        values[ids.index(image_id)] = [_number(text, path, line, f"the value for ({image_id}, {column})")
                                       for text, column in zip(row[1:], ids)]
    return values, ids


def _read_long(path: Path, rows: list[tuple[int, list[str]]]) -> tuple[np.ndarray, list[str], list[str] | None]:
    header = [cell.lower() for cell in rows[0][1]]
    column = {name: header.index(name) for name in LONG_COLUMNS + ("rater",) if name in header}
    has_raters = "rater" in column
    seen: dict[tuple[str, frozenset], int] = {}
    entries = []
    ids: dict[str, None] = {}
    raters: dict[str, None] = {}
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise HumanRatingsError(f"{path}, line {line}: {len(row)} cells; expected {len(header)} like the header "
                                    f"{rows[0][1]}")
        first, second = row[column["image_a"]], row[column["image_b"]]
        rater = row[column["rater"]] if has_raters else ""
        if not first or not second or (has_raters and not rater):
            raise HumanRatingsError(f"{path}, line {line}: empty image id or rater")
        value = _number(row[column["dissimilarity"]], path, line, f"the dissimilarity of ({first}, {second})")
        if not math.isfinite(value):
            raise HumanRatingsError(f"{path}, line {line}: the dissimilarity of ({first}, {second}) is {value}; "
                                    f"expected a finite number")
        key = (rater, frozenset((first, second)))
        if key in seen:
            raise HumanRatingsError(f"{path}, line {line}: duplicate pair ({first}, {second})"
                                    + (f" of rater {rater}" if has_raters else "")
                                    + f", first given on line {seen[key]}; expected each pair once (in either order)")
        seen[key] = line
        if first == second and value != 0:
            raise HumanRatingsError(f"{path}, line {line}: non-zero diagonal: the dissimilarity of {first} to itself "
                                    f"is {value:g}; expected 0")
        ids.update({first: None, second: None})
        raters[rater] = None
        entries.append((rater, first, second, value))
    image_ids, rater_ids = list(ids), list(raters)
    if len(image_ids) < 3:
        raise HumanRatingsError(f"{path}: {len(image_ids)} image(s); RSA needs dissimilarities of at least 3 images")
    position = {image_id: k for k, image_id in enumerate(image_ids)}
    rater_position = {rater: k for k, rater in enumerate(rater_ids)}
    values = np.full((len(rater_ids), len(image_ids), len(image_ids)), np.nan)
    for rater, first, second, value in entries:
        values[rater_position[rater], position[first], position[second]] = value
        values[rater_position[rater], position[second], position[first]] = value
    values[:, np.arange(len(image_ids)), np.arange(len(image_ids))] = 0.0
    upper, lower = np.triu_indices(len(image_ids), 1)
    missing = [(rater, image_ids[a], image_ids[b]) for rater in range(len(rater_ids))
               for a, b in zip(upper, lower) if np.isnan(values[rater, a, b])]
    if missing:
        shown = [f"({a}, {b})" + (f" of rater {rater_ids[r]}" if has_raters else "") for r, a, b in missing]
        raise HumanRatingsError(f"{path}: {len(missing)} missing pair(s), e.g. {few(shown)}; expected every pair of "
                                f"the {len(image_ids)} images" + (" for every rater" if has_raters else ""))
    return (values if has_raters else values[0]), image_ids, (rater_ids if has_raters else None)


def load_human_rdm(path: str | Path, image_ids: Sequence | None = None) -> xr.DataArray:
    """Read human dissimilarity ratings from a CSV file as an RDM.

    Two layouts are recognised by the header:

    - *long*: columns ``image_a,image_b,dissimilarity`` and optionally ``rater`` (any order; other columns are
      ignored); each unordered pair once per rater, in either order; every pair of the images present;
    - *square*: a corner cell, then the image ids as header, and one row per image id (its id first, in any order)
      holding a symmetric matrix with a zero diagonal.

    Parameters
    ----------
    path : str or Path
    image_ids : sequence, optional
        The cube's image ids: every id in the file must be among them.

    Returns
    -------
    xarray.DataArray (image_a, image_b) or (rater, image_a, image_b) float64
        String image ids in file order; attrs ``source`` (the path), ``human_source``, ``layout``.

    Raises
    ------
    HumanRatingsError
        Naming the file and what was expected: missing or unreadable file, non-square matrix, header/row ids that
        differ, non-numbers, NaNs, non-zero diagonal, asymmetry (the worst pair), duplicate or missing pairs,
        ids missing from ``image_ids``, fewer than 3 images.
    """
    path = Path(path)
    rows = _read_rows(path)
    header = [cell.lower() for cell in rows[0][1]]
    raters = None
    if all(name in header for name in LONG_COLUMNS):
        values, ids, raters = _read_long(path, rows)
        layout = "long"
    else:
        if any(name in header for name in LONG_COLUMNS):
            raise HumanRatingsError(f"{path}: the header {rows[0][1][:SHOWN]} looks like a long CSV but lacks "
                                    f"{[name for name in LONG_COLUMNS if name not in header]}; expected columns "
                                    f"{', '.join(LONG_COLUMNS)}[,rater]")
        values, ids = _read_square(path, rows)
        layout = "square"
    check_square(values, ids, str(path), raters, error=HumanRatingsError)
    if image_ids is not None:
        known = {str(image_id) for image_id in np.asarray(image_ids).tolist()}
        missing = [image_id for image_id in ids if image_id not in known]
        if missing:
            raise HumanRatingsError(f"{path}: {len(missing)} image id(s) are not in the cube: {few(missing)}; "
                                    f"expected ids among the cube's {len(known)} images")
    dims = (("rater",) if raters is not None else ()) + RDM_DIMS
    coords = {"image_a": ids, "image_b": ids, **({"rater": raters} if raters is not None else {})}
    return xr.DataArray(values, dims=dims, coords=coords, name="dissimilarity",
                        attrs={"source": str(path), "human_source": f"human dissimilarity ratings ({path.name})",
                               "stand_in": "no", "layout": layout, "long_name": "human dissimilarity"})
