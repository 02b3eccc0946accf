"""Files the package writes: atomic replacement, content digests and the versions recorded beside results.

Every file lrp_faces writes goes through :func:`atomic_path`: the content is written to a hidden temporary file in
the same directory, synced, and renamed over the destination, and the directory is synced so that the rename
survives a crash. An error, ``KeyboardInterrupt`` included, removes the temporary file and leaves what was there
before untouched.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> write_text_atomic(folder / "note.txt", "hello")
PosixPath('...note.txt')
>>> (folder / "note.txt").read_text()
'hello'
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["exclusive_lock", "atomic_path", "write_text_atomic", "write_bytes_atomic", "sync_directory", "temporary_files",
           "canonical_json", "sha256_of_file", "sha256_of_chunks", "VERSIONED_PACKAGES", "versions",
           "TEMPORARY_PREFIX"]

TEMPORARY_PREFIX = "."
"""Temporary files are hidden (``.name.XXXX.tmp``) so that globs of finished files never see them."""
TEMPORARY_SUFFIX = ".tmp"

VERSIONED_PACKAGES = {"lrp_faces": "lrp-faces", "torch": "torch", "torchvision": "torchvision", "zennit": "zennit",
                      "numpy": "numpy", "scipy": "scipy", "xarray": "xarray", "netcdf4": "netCDF4"}
"""Key in :func:`versions` -> distribution name."""


def sync_directory(directory: str | os.PathLike) -> None:
    """Make renames in ``directory`` durable (POSIX); a no-op where directories cannot be synced.

    Examples
    --------
    >>> import tempfile
    >>> sync_directory(tempfile.mkdtemp())  # returns nothing; afterwards the directory's entries are on disk
    """
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _sync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on success it replaces ``path`` atomically.

    The temporary file is hidden, in the same directory (created if needed), synced before the rename, and given
    the permissions of the file it replaces (``mode``, else 0o644 for a new file). On any error the temporary file
    is removed and ``path`` keeps its previous content.

    Parameters
    ----------
    path : str or PathLike
        The destination.
    mode : int, optional
        Permission bits of the new file.

    Yields
    ------
    pathlib.Path
        Where to write; the file exists (empty) when the block starts.

    Examples
    --------
    Write with any library that takes a path; the destination changes only when the block completes:

    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "values.npy"
    >>> with atomic_path(target) as temporary:
    ...     np.save(temporary.open("wb"), np.arange(3))
    >>> np.load(target).tolist()
    [0, 1, 2]
    >>> try:
    ...     with atomic_path(target) as temporary:
    ...         _ = temporary.write_text("half-written")
    ...         raise RuntimeError("interrupted")
    ... except RuntimeError:
    ...     pass
    >>> np.load(target).tolist(), temporary.exists()  # the old content, and no temporary file left
    ([0, 1, 2], False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o644
    handle, name = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{path.name}.", suffix=TEMPORARY_SUFFIX,
                                    dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        _sync_file(temporary)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def write_bytes_atomic(path: str | os.PathLike, content: bytes) -> Path:
    """Write ``content`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = write_bytes_atomic(pathlib.Path(tempfile.mkdtemp()) / "data.bin", bytes([0, 255]))
    >>> list(path.read_bytes())
    [0, 255]
    """
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_bytes(content)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> write_text_atomic(pathlib.Path(tempfile.mkdtemp()) / "notes" / "a.txt", "é").read_text(encoding="utf-8")
    'é'
    """
    return write_bytes_atomic(path, text.encode("utf-8"))


def temporary_files(directory: str | os.PathLike, name: str = "*") -> list[Path]:
    """Temporary files that :func:`atomic_path` left in ``directory`` for destinations matching ``name``.

    Only a killed process leaves them; remove them only while no other process can be writing there.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / ".result.nc.x1y2.tmp").write_bytes(b"")  # as a killed writer of result.nc leaves it
    >>> [path.name for path in temporary_files(folder, "result.nc")]
    ['.result.nc.x1y2.tmp']
    """
    return sorted(Path(directory).glob(f"{TEMPORARY_PREFIX}{name}.*{TEMPORARY_SUFFIX}"))


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so that equal settings give equal strings (and digests).

    Examples
    --------
    >>> canonical_json({"b": [1, 2], "a": 0.5}) == canonical_json({"a": 0.5, "b": [1, 2]})
    True
    >>> canonical_json({"b": [1, 2], "a": 0.5})
    '{"a":0.5,"b":[1,2]}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def sha256_of_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks.

    Examples
    --------
    >>> import hashlib, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = path.write_bytes(b"abc")
    >>> sha256_of_file(path, chunk_size=2) == hashlib.sha256(b"abc").hexdigest()
    True
    """
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_chunks(chunks: Iterable[bytes]) -> str:
    """Hex SHA-256 of the concatenated ``chunks``.

    Examples
    --------
    >>> import hashlib
    >>> sha256_of_chunks([b"ab", b"c"]) == hashlib.sha256(b"abc").hexdigest()
    True
    """
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def versions(packages: Iterable[str] | None = None) -> dict[str, str]:
    """Installed versions, keyed by lower_snake_case name (see :data:`VERSIONED_PACKAGES`), plus ``python``.

    Parameters
    ----------
    packages : iterable of str, optional
        Keys of :data:`VERSIONED_PACKAGES` to report (default: all of them).

    Returns
    -------
    dict
        ``{"python": "3.11.7", "lrp_faces": "0.1.0", "torch": ..., ...}``; ``"unknown"`` for a package that is not
        installed as a distribution.

    Examples
    --------
    >>> sorted(versions(["torch", "zennit"]))
    ['python', 'torch', 'zennit']
    >>> list(versions()) == ["python", *VERSIONED_PACKAGES]
    True
    """
    keys = list(VERSIONED_PACKAGES) if packages is None else list(packages)
    found = {"python": sys.version.split()[0]}
    for key in keys:
        try:
            found[key] = version(VERSIONED_PACKAGES[key])
        except PackageNotFoundError:  # pragma: no cover - e.g. a source tree that was not installed
            found[key] = "unknown"
    return found


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, busy: Callable[[], Exception]) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if needed) for the block; the OS releases it if the
    process dies. Where another process holds it, raise ``busy()`` at once instead of waiting. Without POSIX
    ``fcntl`` (Windows) the block runs unlocked."""
    with open(path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise busy() from None
        yield
