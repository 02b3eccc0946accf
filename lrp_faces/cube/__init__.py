"""Relevance cubes: every map of every model for every image, as one labelled xarray Dataset.

Two tiny VGG-16s and eight synthetic faces (a real study loads its zoo with :class:`lrp_faces.zoo.Zoo`):

>>> import tempfile, torch
>>> from lrp_faces import cube, vgg16
>>> from lrp_faces.faces import synthetic_faces
>>> from lrp_faces.zoo import ModelSpec
>>> faces = synthetic_faces(4, 2, size=32)
>>> _ = torch.manual_seed(0)
>>> zoo = {ModelSpec("faces", "gender", seed): vgg16(num_classes=2, width=1 / 16, classifier_width=8, pool_size=1)
...        for seed in (0, 1)}
>>> folder = tempfile.mkdtemp()
>>> maps = cube.compute(zoo, faces, folder, progress=False)
>>> maps.relevance.dims
('pretraining', 'task', 'seed', 'image', 'y', 'x')
>>> maps.relevance.sel(task="gender").mean("seed").sizes["image"]
8
>>> cube.open(folder).lrp.models() == sorted(zoo)
True
>>> [path.name for path in cube.verify(folder)]
['faces-gender-seed0.nc', 'faces-gender-seed1.nc']

On disk a cube is a directory with one NetCDF4 file per model (``faces-gender-seed0.nc``), each readable with plain
``xarray.open_dataset``, checksummed (every chunk, and a digest of the header) and written atomically. The work is
done in units of one model and one block of images (:mod:`lrp_faces.cube.blocks`), saved as they finish, so an
interrupted :func:`compute` resumes from the last finished block. Importing this module registers the ``.lrp``
accessor.
"""
from ._compute import compute
from ._open import open_cube as open  # noqa: A001 - the public name; the builtin stays reachable as builtins.open
from ._open import verify
from ._store import (FORMAT, FORMAT_VERSION, NON_FINITE_MAPS, CubeError, CubeFileError, CubeInputError,
                     CubeMismatchError, CubeNonFiniteError, CubeWarning, file_name)
from .accessor import LRPAccessor
from .blocks import Batch, explain_block

__all__ = ["compute", "open", "verify", "explain_block", "Batch", "CubeError", "CubeFileError", "CubeInputError",
           "CubeMismatchError", "CubeNonFiniteError", "CubeWarning", "LRPAccessor", "file_name", "FORMAT",
           "FORMAT_VERSION", "NON_FINITE_MAPS"]
