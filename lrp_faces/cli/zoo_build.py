"""``lrp-faces zoo build ZOO.toml``: fine-tune every model of a zoo recipe from its base weights (resumable).

The recipe file (:meth:`lrp_faces.zoo.ZooRecipe.from_dict` lists its tables) also holds the faces in a ``[dataset]``
table, as a study file does (:class:`lrp_faces.cli.study.DatasetSettings`), with the held-out split in
``[dataset].split``. The command reads both, loads the faces and calls :func:`lrp_faces.zoo.build_zoo`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import click

from . import META

__all__ = ["zoo", "zoo_build", "register", "read_zoo_file", "load_faces", "DEFAULT_OUT"]

DEFAULT_OUT = "zoo"
"""The output folder, beside the recipe file, where neither ``--out`` nor ``[build].out`` names one."""


def _setting(name: str) -> bool:
    context = click.get_current_context(silent=True)
    return bool(context is not None and context.meta.get(META + name))


def _log(line: str) -> None:
    if not _setting("quiet"):
        click.echo(line, err=True)


def read_zoo_file(path: str | os.PathLike):
    """The recipe and the ``[dataset]`` settings of a ``ZOO.toml``.

    Returns
    -------
    (ZooRecipe, DatasetSettings)

    Raises
    ------
    ZooError
        A missing or invalid file, table or key (naming the file, the table and the key).
    StudyError
        An invalid ``[dataset]`` table (as in a study file).
    """
    from ..toml_tables import TomlTable, read_toml
    from ..zoo import ZooError, ZooRecipe
    from .study import DatasetSettings

    path = Path(path)
    document = read_toml(path, "zoo recipe", ZooError)
    recipe = ZooRecipe.from_dict(document, base=path.parent, name=path.name)
    if "dataset" not in document:
        raise ZooError(f"{path.name}: missing table [dataset] (the faces the models are trained on: kind = "
                       "\"manifest\", \"folders\", \"celeba\" or \"synthetic\", as in a study file)")
    dataset = document["dataset"]
    if isinstance(dataset, Mapping) and dataset.get("kind") == "demo":
        raise ZooError(f"{path.name}: [dataset].kind: \"demo\" is the demo zoo's faces; a zoo build trains on "
                       "\"synthetic\" faces or real ones (\"manifest\", \"folders\", \"celeba\")")
    if isinstance(dataset, Mapping) and isinstance(dataset.get("split"), Mapping):  # the recipe's: read above
        dataset = {key: value for key, value in dataset.items() if key != "split"}
    return recipe, DatasetSettings.from_table(TomlTable(dataset, path.name, ("dataset",), ZooError), path.parent)


def load_faces(settings):
    """The faces of a ``[dataset]`` table, with the labels of ``settings.labels`` (a FaceDataView).

    Real faces are read with the identity labels (the held-out split needs them), at ``image_size`` (default 224).
    """
    from ..faces import as_face_data
    from .runner import evenly_spaced, read_faces

    source = read_faces(settings, settings.image_size or 224, "identity")
    if settings.max_images is not None:
        source = source.subset(evenly_spaced(len(source), settings.max_images))
    return as_face_data(source, label_names=dict(settings.labels))


@click.group()
def zoo():
    """Build a zoo of fine-tuned models from base weights."""


@zoo.command("build")
@click.argument("zoo_file", metavar="ZOO.toml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Output folder (default: [build].out, else {DEFAULT_OUT}/ beside ZOO.toml).")
@click.option("--device", default=None, metavar="DEVICE",
              help="Where the models train: cpu (default), cuda or cuda:N.")
@click.option("--cluster", default=None, metavar="CLUSTER",
              help="Train the models on dask workers: local, local:N (N processes here) or tcp://HOST:PORT (a "
                   "running scheduler). Default: one after another in this process.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch threads per model (default: torch's, all cores; each worker's own on a cluster). The same "
                   "number everywhere gives bit-identical weights on the CPU.")
def zoo_build(zoo_file: Path, out: Path | None, device: str | None, cluster: str | None, threads: int | None):
    """Fine-tune every pretraining x task x seed of ZOO.toml (resumes).

    Trains each model from its base weights on the train part of [dataset] (held-out split), writes its checkpoint
    with the training record to OUT/models/, and OUT/zoo.toml, the [zoo] table for a study file. A rerun retrains
    only the models whose recipe changed or whose checkpoint is missing or damaged, and says why.
    """
    from ..compute import cluster_client
    from ..models import read_checkpoint_info
    from ..zoo import build_zoo

    recipe, settings = read_zoo_file(zoo_file)
    out = out if out is not None else (recipe.out if recipe.out is not None else zoo_file.parent / DEFAULT_OUT)
    progress = not (_setting("no_progress") or _setting("quiet"))
    _log(f"zoo recipe {zoo_file} -> {out}")
    faces = load_faces(settings)
    with cluster_client(cluster, log=_log) as client:
        built = build_zoo(recipe, faces, out, progress=progress, device=device, client=client, threads=threads,
                          log=_log)
    click.echo(f"Zoo: {(out / 'zoo.toml').resolve()} ({_models(len(built))}"
               f"{'' if built.image_size is None else f', {built.image_size} px'})")
    width = max(len(spec.name) for spec in built)
    for spec in built:
        metadata = read_checkpoint_info(built.entries[spec].path)["metadata"]
        click.echo(f"  {spec.name:<{width}}  train {metadata['train_accuracy']:.3f}  validation "
                   f"{metadata['validation_accuracy']:.3f}")


def _models(count: int) -> str:
    return f"{count} model{'s' * (count != 1)}"


def register(group: click.Group, common_options: Callable) -> None:
    """Add ``zoo build`` to ``group``, with the command line's common options (``--no-progress``, ``-q``, ...)."""
    common_options(zoo_build)
    group.add_command(zoo)
