"""Relevance maps overlaid on the faces: a grid of images x models."""
from __future__ import annotations

from typing import Any, Sequence

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..formatting import model_label
from ..result_layout import computed_models
from ..zoo import MODEL_DIMS, ModelSpec, ZooError
from ._common import PlotError, PlotTypeError, new_figure, style

RELEVANCE_DIMS = MODEL_DIMS + ("image", "y", "x")
"""Dims of a cube's ``relevance``: one (y, x) map per model and image."""


def _relevance(cube: Any) -> xr.DataArray:
    relevance = cube["relevance"] if isinstance(cube, xr.Dataset) and "relevance" in cube else cube
    if not isinstance(relevance, xr.DataArray):
        raise PlotTypeError(f"cube must be a relevance cube (xarray.Dataset with 'relevance', e.g. from "
                            f"lrp_faces.cube.open) or its relevance DataArray, got {type(cube).__name__}")
    missing = [dim for dim in RELEVANCE_DIMS if dim not in relevance.dims]
    if missing:
        raise PlotError(f"cube.relevance must have dims {RELEVANCE_DIMS}; it lacks {missing} "
                        f"(it has {relevance.dims})")
    return relevance


def _parse_model(model: Any) -> tuple[str, str, int]:
    """A ModelSpec, a (pretraining, task, seed) tuple, an id ``"faces/gender/0"`` (:meth:`ModelSpec.from_id
    <lrp_faces.zoo.ModelSpec.from_id>`) or a name ``"faces-gender-seed0"`` (:meth:`ModelSpec.parse
    <lrp_faces.zoo.ModelSpec.parse>`)."""
    if all(hasattr(model, name) for name in MODEL_DIMS):
        return str(model.pretraining), str(model.task), int(model.seed)
    if isinstance(model, (tuple, list)) and len(model) == 3:
        return str(model[0]), str(model[1]), int(model[2])
    if isinstance(model, str):
        for parse in (ModelSpec.from_id, ModelSpec.parse):
            try:
                spec = parse(model)
            except ZooError:
                continue
            return spec.pretraining, spec.task, spec.seed
    raise PlotError(f"models must hold ModelSpecs, (pretraining, task, seed) tuples or ids like 'faces/gender/0'; "
                    f"got {model!r}")


def _choose_models(relevance: xr.DataArray, models: Sequence | None) -> list[tuple[str, str, int]]:
    present = computed_models(relevance)
    if models is None:  # one seed (the first computed) of every pretraining x task cell
        chosen, cells = [], set()
        for model in present:
            if model[:2] not in cells:
                cells.add(model[:2])
                chosen.append(model)
        return chosen
    if isinstance(models, (str, bytes)) or not isinstance(models, Sequence):
        raise PlotTypeError(f"models must be a sequence of models, got {type(models).__name__}")
    chosen = [_parse_model(model) for model in models]
    grid = {dim: {str(value) if dim != "seed" else int(value) for value in relevance[dim].values}
            for dim in MODEL_DIMS}
    unknown = [model for model in chosen if any(value not in grid[dim] for dim, value in zip(MODEL_DIMS, model))]
    if unknown:
        raise PlotError(f"models {['/'.join(map(str, model)) for model in unknown]} are not in the cube; it has "
                        f"{['/'.join(map(str, model)) for model in present]}")
    if not chosen:
        raise PlotError("models is empty; give at least one model or None for one seed of every cell")
    return chosen


def _choose_images(relevance: xr.DataArray, image_ids: Sequence | int | None, max_images: int) -> list[str]:
    ids = [str(value) for value in relevance["image"].values]
    if not ids:
        raise PlotError("the cube has no images")
    if image_ids is None or isinstance(image_ids, (int, np.integer)):
        count = min(len(ids), int(image_ids) if image_ids is not None else max_images)
        if count < 1:
            raise PlotError(f"image_ids as a count must be >= 1, got {image_ids!r}")
        return [ids[index] for index in np.unique(np.linspace(0, len(ids) - 1, count).round().astype(int))]
    if isinstance(image_ids, (str, bytes)):
        image_ids = [image_ids]
    chosen = [str(value) for value in image_ids]
    missing = [value for value in chosen if value not in ids]
    if missing:
        raise PlotError(f"image_ids {missing[:5]} are not in the cube (its ids look like {ids[:3]})")
    if not chosen:
        raise PlotError("image_ids is empty")
    return chosen


def _as_rgb(image: np.ndarray, name: str) -> np.ndarray:
    """(H, W, 3) or (H, W) float in [0, 1] from (3, H, W), (H, W, 3) or (H, W)."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise PlotError(f"{name} must be (3, H, W), (H, W, 3) or (H, W) images, got an image of shape {image.shape}")
    if image.max(initial=0.0) > 1.5:  # 0..255
        image = image / 255.0
    return np.clip(image, 0.0, 1.0)


def _image_lookup(images: Any, ids: list[str], cube_ids: list[str]) -> dict[str, np.ndarray] | None:
    """The face of every chosen image id, from a dataset, an array in cube order, a DataArray or a mapping."""
    if images is None:
        return None
    if hasattr(images, "images") and hasattr(images, "image_ids"):
        position = {str(value): index for index, value in enumerate(images.image_ids)}
        missing = [value for value in ids if value not in position]
        if missing:
            raise PlotError(f"images (a dataset) lacks the image ids {missing[:5]} of the cube")
        pixels = images.images
        pixels = pixels.detach().cpu().numpy() if hasattr(pixels, "detach") else np.asarray(pixels)
        return {value: _as_rgb(pixels[position[value]], "images") for value in ids}
    if isinstance(images, dict):
        missing = [value for value in ids if value not in images]
        if missing:
            raise PlotError(f"images (a mapping) lacks the image ids {missing[:5]}")
        return {value: _as_rgb(images[value], f"images[{value!r}]") for value in ids}
    if isinstance(images, xr.DataArray) and "image" in images.dims:
        available = [str(value) for value in images["image"].values]
        missing = [value for value in ids if value not in available]
        if missing:
            raise PlotError(f"images (a DataArray) lacks the image ids {missing[:5]}")
        return {value: _as_rgb(images.isel(image=available.index(value)).values, "images") for value in ids}
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise PlotTypeError(f"images must be a dataset with .images and .image_ids, an array (N, 3, H, W) in the "
                            f"cube's image order, a DataArray over 'image' or a mapping id -> image; got "
                            f"{type(images).__name__}")
    if images.shape[0] != len(cube_ids):
        raise PlotError(f"images as an array must hold one image per image of the cube ({len(cube_ids)}) in its "
                        f"order, got {images.shape[0]}")
    return {value: _as_rgb(images[cube_ids.index(value)], "images") for value in ids}


def _grey(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else image @ np.array([0.299, 0.587, 0.114])


def relevance_grid(cube: xr.Dataset | xr.DataArray, images: Any = None, image_ids: Sequence | int | None = None,
                   models: Sequence | None = None, *, max_images: int = 4, cmap: str = "bwr",
                   max_alpha: float = 0.85, cell_size: float = 1.55) -> Figure:
    """A grid of relevance maps, images x models, overlaid on the greyscale faces.

    Each map uses a diverging colormap centred at 0 with symmetric limits of its own (red: evidence for the
    explained class, blue: against); the opacity of the overlay grows with ``|relevance|`` so that the face shows
    through where relevance is small.

    Parameters
    ----------
    cube : xarray.Dataset or DataArray
        A relevance cube (:func:`lrp_faces.cube.open`) or its ``relevance``; ragged cubes are fine.
    images : dataset, array, DataArray or mapping, optional
        The faces: a dataset with ``.images`` and ``.image_ids`` (e.g. SyntheticFaces), an array (N, 3, H, W) in the
        cube's image order, a DataArray over ``image`` or a mapping id -> image. Without it the maps are drawn alone.
    image_ids : sequence of str or int, optional
        The images (rows), or how many to take evenly through the cube (default ``max_images``).
    models : sequence, optional
        The models (columns): ModelSpecs, (pretraining, task, seed) tuples or ids ``"faces/gender/0"``; default one
        seed (the first computed) of every pretraining x task cell.
    max_images : int
        Rows when ``image_ids`` is not given.
    cmap : str
        A diverging colormap.
    max_alpha : float
        Opacity of the overlay where ``|relevance|`` is largest.
    cell_size : float
        Inches per map.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per map (plus a first column with the faces when ``images`` is given) and a colorbar axes.

    Examples
    --------
    >>> import tempfile, torch
    >>> from lrp_faces import cube, masking, vgg16
    >>> from lrp_faces.faces import synthetic_faces
    >>> from lrp_faces.zoo import ModelSpec
    >>> _ = torch.manual_seed(0)
    >>> faces = synthetic_faces(2, 3, size=32)
    >>> zoo = {ModelSpec("faces", task, 0): vgg16(num_classes=2, width=1 / 16, classifier_width=8, pool_size=1)
    ...        for task in ("gender", "identity")}  # untrained stand-ins
    >>> maps = cube.compute(zoo, faces, tempfile.mkdtemp(), progress=False)
    >>> figure = relevance_grid(maps, faces, max_images=2)  # 2 rows: the face, then each model's map
    >>> len(figure.axes)  # 2 x (1 + 2), and the colour bar
    7
    >>> figure.savefig(tempfile.mktemp(suffix=".png"))
    """
    relevance = _relevance(cube)
    chosen_models = _choose_models(relevance, models)
    ids = _choose_images(relevance, image_ids, max_images)
    faces = _image_lookup(images, ids, [str(value) for value in relevance["image"].values])
    if not 0 < max_alpha <= 1:
        raise PlotError(f"max_alpha must be in (0, 1], got {max_alpha!r}")
    columns = len(chosen_models) + (faces is not None)
    colormap = matplotlib.colormaps[cmap]
    with style(0.8):
        figure = new_figure(cell_size * columns + 0.9, cell_size * len(ids) + 0.9)
        grid = figure.add_gridspec(len(ids), columns + 1, width_ratios=[1.0] * columns + [0.06])
        for row, image_id in enumerate(ids):
            maps = relevance.sel(image=image_id)
            for column in range(columns):
                ax = figure.add_subplot(grid[row, column])
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if column == 0:
                    ax.set_ylabel(image_id, fontsize="small")
                if faces is not None and column == 0:
                    ax.imshow(faces[image_id], interpolation="nearest")
                    if row == 0:
                        ax.set_title("image", fontsize="small")
                    continue
                pretraining, task, seed = chosen_models[column - (faces is not None)]
                if row == 0:
                    ax.set_title(model_label(pretraining, task, seed, separator="\n"), fontsize="small")
                values = np.asarray(maps.sel(pretraining=pretraining, task=task, seed=seed).values, np.float64)
                limit = np.nanmax(np.abs(values)) if np.isfinite(values).any() else np.nan
                if not np.isfinite(limit):
                    ax.text(0.5, 0.5, "not\ncomputed", ha="center", va="center", transform=ax.transAxes,
                            fontsize="small", color="0.4")
                    continue
                scaled = values / limit if limit > 0 else np.zeros_like(values)
                if faces is not None:
                    ax.imshow(_grey(faces[image_id]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                    overlay = colormap(0.5 + scaled / 2)
                    overlay[..., 3] = max_alpha * np.abs(scaled) ** 0.5
                    ax.imshow(overlay, interpolation="nearest")
                else:
                    ax.imshow(scaled, cmap=colormap, vmin=-1, vmax=1, interpolation="nearest")
        colorbar_axes = figure.add_subplot(grid[:, columns])
        mappable = ScalarMappable(Normalize(-1, 1), colormap)
        colorbar = figure.colorbar(mappable, cax=colorbar_axes)
        colorbar.set_ticks([-1, 0, 1], labels=["−max", "0", "+max"])
        colorbar.set_label("relevance (each map scaled to its largest |value|)", fontsize="small")
        figure.suptitle("Relevance maps: red speaks for the explained class, blue against it", fontsize="medium")
    return figure
