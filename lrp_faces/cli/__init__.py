"""The ``lrp-faces`` command: the offline demo, studies declared in TOML, their steps, reports and file summaries.

Exit status 0 on success, 2 on usage errors (click's), 1 on failures, with a one-line cause (``--debug`` shows the
traceback instead). A failure that is the user's to fix (:func:`is_user_error`: a package error, a path that is
missing or not allowed, a full disk) is its message; any other is a bug, reported as an internal error.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import warnings
from pathlib import Path

import click

from .. import __version__
from ..errors import LRPFacesError

META = "lrp_faces.cli."
PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
"""The operating system's errors about a path the user gave: theirs to fix, like every :class:`LRPFacesError`."""
FULL_DISK = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is the user's to fix: a package error (:class:`~lrp_faces.errors.LRPFacesError`), an error
    about a path they gave (:data:`PATH_ERRORS`) or a full disk; anything else is a bug, reported as internal."""
    return isinstance(error, (LRPFacesError,) + PATH_ERRORS) or (
        isinstance(error, OSError) and error.errno in FULL_DISK)


def _flag(name: str):
    def callback(ctx: click.Context, parameter: click.Parameter, value: bool) -> None:
        if value:
            ctx.meta[META + name] = True
    return callback


def _common_options(function):
    """``--no-progress``, ``-q/--quiet`` and ``--debug``, accepted before or after the subcommand."""
    options = [
        click.option("--no-progress", is_flag=True, expose_value=False, callback=_flag("no_progress"),
                     help="Do not show progress bars."),
        click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_flag("quiet"),
                     help="Log only warnings and errors (implies --no-progress)."),
        click.option("--debug", is_flag=True, expose_value=False, callback=_flag("debug"),
                     help="Show the traceback of a failure instead of a one-line cause."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _setting(name: str) -> bool:
    context = click.get_current_context(silent=True)
    return bool(context is not None and context.meta.get(META + name))


def _progress() -> bool:
    return not (_setting("no_progress") or _setting("quiet"))


def _log(line: str) -> None:
    if not _setting("quiet"):
        click.echo(line, err=True)


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyError) and len(error.args) == 1:
        message = str(error.args[0])
    else:
        message = str(error) or type(error).__name__
    if is_user_error(error):
        return _one_line(message)
    return _one_line(f"{type(error).__name__}: {message} (an internal error; rerun with --debug for the traceback)")


@contextlib.contextmanager
def _warnings_as_lines():
    """Library warnings as one ``Warning: ...`` line each.

    Dropped: numpy's NaN-arithmetic notes raised in lrp_faces or numpy code (CIs that are undefined, e.g. for
    relations without pairs, are NaN in the results anyway); the same notes from other libraries are shown.
    """
    def show(message, category, filename, lineno, file=None, line=None):
        click.echo(f"Warning: {_one_line(message)}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        warnings.filterwarnings("ignore", message=r".*(Degrees of freedom|Mean of empty slice|invalid value).*",
                                category=RuntimeWarning, module=r"(lrp_faces|numpy)(\.|$)")
        yield


class _Group(click.Group):
    """Turns failures inside a command into one-line ``Error: ...`` messages with exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            with _warnings_as_lines():
                return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # the reader went away (``lrp-faces info ... | head``): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        except Exception as error:  # noqa: BLE001 - every failure becomes one line unless --debug
            if ctx.meta.get(META + "debug"):
                raise
            raise click.ClickException(_describe(error)) from error


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="lrp-faces")
@_common_options
def main():
    """Pixel-wise relevance (LRP) for VGG-16 face classifiers, validated by masking and across models.

    Start with `lrp-faces demo`; run your own study with `lrp-faces run STUDY.toml` (see benchmarks/suites/).
    """


def _out_option(help_text: str):
    return click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help=help_text)


_STUDY = click.argument("study_file", metavar="STUDY.toml", type=click.Path(dir_okay=False, path_type=Path))


def _where_options(function):
    """``--device``, ``--cluster`` and ``--threads``: where a command's units run (default: the study's [compute])."""
    options = [
        click.option("--device", default=None, metavar="DEVICE",
                     help="cpu | cuda | cuda:N | auto (a GPU when there is one); default: [compute].device, else "
                          "auto."),
        click.option("--cluster", default=None, metavar="CLUSTER",
                     help="Run the units on dask: local[:N] (N worker processes here), tcp://HOST:PORT (a running "
                          "scheduler) or slurm ([compute.slurm] in the study file); default: [compute].cluster, else "
                          "in this process."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="Torch threads per unit (default: 1 for the demo zoo's small models, which run fastest "
                          "single-threaded; torch's default, all cores, for other zoos)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _study_step_options(function):
    """The options of a command that runs steps of a study: STUDY.toml, --out, where the units run, and the
    common ones."""
    options = (_STUDY, _out_option("Results directory (default: [study].out, else ./lrp-faces-NAME)."),
               _where_options, _common_options)
    for option in reversed(options):
        function = option(function)
    return function


@contextlib.contextmanager
def _unit_lines():
    """Print the executor's one line per step (units computed and reused) like the steps' own lines."""
    import logging

    class Echo(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            _log(record.getMessage())

    logger, handler = logging.getLogger("lrp_faces.compute"), Echo()
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@contextlib.contextmanager
def _running(study, out: Path, device: str | None, cluster: str | None, threads: int | None):
    """The study's run into ``out`` with the command line's ``--device``, ``--cluster`` and ``--threads``: the
    cluster (if any) is started or reached first and closed after the block."""
    import dataclasses

    from ..compute import cluster_client, torch_threads
    from .runner import StudyRun
    study = dataclasses.replace(study, compute=study.compute.with_options(device, cluster, threads))
    with _unit_lines(), cluster_client(study.compute.cluster, study.compute.slurm, log=_log) as client:
        run = StudyRun(study, out, progress=_progress(), log=_log, client=client)
        with torch_threads(run.threads if client is None else None):
            yield run


@contextlib.contextmanager
def _study_run(study_file: Path, out: Path | None, device: str | None, cluster: str | None,
               threads: int | None):
    """The run of the study in ``study_file`` into ``out`` (see :func:`_running`)."""
    from .study import Study
    study = Study.from_toml(study_file)
    out = out if out is not None else (study.out if study.out is not None else Path(f"lrp-faces-{study.name}"))
    _log(f"study {study.name!r} from {study_file} -> {out}")
    with _running(study, out, device, cluster, threads) as study_run:
        yield study_run


def _summary(run, index: Path | None) -> None:
    from .summary import summary_lines
    if index is not None:
        click.echo(f"Report: {index.resolve()}")
    for line in summary_lines(run.out):
        click.echo(line)


@main.command()
@_out_option("Results directory (default: ./lrp-faces-demo, or ./lrp-faces-demo-quick with --quick).")
@click.option("--quick", is_flag=True, help="The reduced demo for CI: one seed, fewer images and resamples.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo zoo's checkpoints are cached (default: $LRP_FACES_CACHE, else "
                   "~/.cache/lrp_faces).")
@_where_options
@_common_options
def demo(out: Path | None, quick: bool, cache_dir: Path | None, device: str | None, cluster: str | None,
         threads: int | None):
    """Run the whole study offline on synthetic faces.

    Trains or loads the demo zoo (2 pretrainings x 2 tasks x 3 seeds), computes the cube, the masking benchmark
    and the analyses, writes the report, and prints a short summary. A rerun skips the finished steps.
    """
    from .demo import demo_study
    study = demo_study(quick=quick, cache_dir=cache_dir)
    out = out if out is not None else Path(f"lrp-faces-{study.name}")
    _log(f"lrp-faces demo{' --quick' if quick else ''}: results in {out} (a rerun skips finished steps)")
    with _running(study, out, device, cluster, threads) as study_run:
        _summary(study_run, study_run.all())


@main.command()
@_study_step_options
def run(study_file: Path, out: Path | None, device: str | None, cluster: str | None, threads: int | None):
    """Run a study declared in TOML (resumes).

    Every step in order: attribute, mask, analyze, report. A rerun skips steps whose result files hold the same
    settings and recomputes those whose settings changed. See benchmarks/suites/ for examples.
    """
    with _study_run(study_file, out, device, cluster, threads) as study_run:
        _summary(study_run, study_run.all())


@main.command()
@_study_step_options
def attribute(study_file: Path, out: Path | None, device: str | None, cluster: str | None, threads: int | None):
    """Compute the relevance cube (OUT/cube, resumable)."""
    with _study_run(study_file, out, device, cluster, threads) as study_run:
        study_run.attribute()
    click.echo(f"Cube: {study_run.cube_path.resolve()}")


@main.command()
@_study_step_options
def mask(study_file: Path, out: Path | None, device: str | None, cluster: str | None, threads: int | None):
    """Masking benchmark and cross-model generalisation.

    Writes OUT/masking.nc (generalisation) and OUT/masking_lerf.nc (LeRF self-masking) from the cube of
    `lrp-faces attribute`.
    """
    with _study_run(study_file, out, device, cluster, threads) as study_run:
        path = study_run.mask()
    click.echo(f"Masking: {path.resolve()}")


@main.command()
@_study_step_options
@click.option("--only", multiple=True, type=click.Choice(["similarity", "regions", "methods", "rsa"]),
              help="Run only this analysis (repeatable); default: those of [analysis].run.")
def analyze(study_file: Path, out: Path | None, only: tuple[str, ...], device: str | None, cluster: str | None,
            threads: int | None):
    """Run the analyses: similarity, regions, methods, RSA.

    Writes OUT/similarity.nc, regions.nc (with ground truth where known), methods.nc and rsa.nc.
    """
    with _study_run(study_file, out, device, cluster, threads) as study_run:
        paths = study_run.analyze(only or None)
    for path in paths:
        click.echo(f"Analysis: {path.resolve()}")


@main.command()
@click.argument("results", metavar="RESULTS_DIR", type=click.Path(file_okay=False, path_type=Path))
@_out_option("Report directory (default: RESULTS_DIR/report).")
@_common_options
def report(results: Path, out: Path | None):
    """Write the HTML report from a results directory."""
    from ..report import write_report
    from .summary import study_images
    index = write_report(results, out, progress=_progress(), images=study_images(results))
    click.echo(f"Report: {index.resolve()}")


@main.command()
@click.argument("path", metavar="PATH", type=click.Path(path_type=Path))
@_common_options
def info(path: Path):
    """Summarise a cube, result file, results dir or study.

    PATH is a cube directory (or one model's file), a result .nc file, a results directory or a study TOML.
    """
    from .info import describe
    for line in describe(path):
        click.echo(line)
    if path.suffix == ".toml":
        click.echo(f"Cost per step (passes, estimated time, disk): lrp-faces plan {path}")


@main.command()
@_STUDY
@click.option("--no-calibrate", is_flag=True, help="Counts and sizes only: load no model and time nothing.")
@click.option("--device", default=None, metavar="DEVICE",
              help="Where the study will run: cpu | cuda | cuda:N | auto; default: [compute].device, else auto.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch threads of the calibration; default: as the study's run would use.")
@_common_options
def plan(study_file: Path, no_calibrate: bool, device: str | None, threads: int | None):
    """Print a study's cost per step: passes, estimated time, disk.

    Counts the forward and LRP passes of every step from the study's settings, times one forward and one LRP batch
    of each architecture of the zoo on this machine (--no-calibrate skips it) and bounds the size of the results.
    """
    import dataclasses

    from ..compute import torch_threads
    from .plan import plan_lines, study_plan
    from .study import Study
    study = Study.from_toml(study_file)
    study = dataclasses.replace(study, compute=study.compute.with_options(device, None, threads))
    with torch_threads(study.threads):
        cost = study_plan(study, calibrate=not no_calibrate, device=study.compute.resolved_device())
    for line in plan_lines(cost):
        click.echo(line)


@main.command()
@_common_options
def methods():
    """List the attribution methods."""
    from .. import methods as registry
    for name in registry.names():
        click.echo(name)


from .zoo_build import register as _register_zoo  # noqa: E402 - `lrp-faces zoo build`, defined in its own module
_register_zoo(main, _common_options)

__all__ = ["main"]
