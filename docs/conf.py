"""Sphinx configuration of the lrp-faces documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html``
Doctest: ``sphinx-build -W --keep-going -b doctest docs docs/_build/doctest``

The build needs no network and fetches nothing. The HTML build runs ``lrp-faces demo --quick`` into
``docs/_build/demo`` for the gallery (reused while the package's source is unchanged; docs/_ext/demo_gallery.py) and
executes the tutorials in ``tutorials/`` (sphinx-gallery; reused while a script is unchanged). MathJax is bundled
(sphinx-mathjax-offline), and docs/_ext/offline_check.py fails the build if a page loads anything remote.
"""
from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

# -- project ----------------------------------------------------------------------------------------------------------
project = "lrp-faces"
author = "lrp-faces developers"
copyright = "lrp-faces developers; LGPL-3.0-or-later"
try:
    release = version("lrp-faces")
except PackageNotFoundError:  # building from a source tree that is not installed
    release = "0.0.0+unknown"
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/mathjax: formulas render offline
    "numpydoc",
    "sphinxcontrib.bibtex",
    "sphinx_copybutton",
    "myst_parser",  # CHANGELOG.md on the changelog page
    "sphinx_gallery.gen_gallery",  # the tutorials: scripts executed at build time
    "matplotlib.sphinxext.plot_directive",  # figures drawn at build time (``.. plot::``)
    "lrp_faces_docs",  # docs/_ext: alias resolution, API coverage check, the click help directive
    "demo_gallery",  # docs/_ext: the gallery's figures and readings from a quick demo run
    "offline_check",  # docs/_ext: no page may load a remote resource
]

exclude_patterns = ["_build", "scripts", "Thumbs.db", ".DS_Store", "**/.gitignore"]
source_suffix = {".rst": "restructuredtext"}  # Markdown only where a page includes it (the changelog)
templates_path = ["_templates"]
default_role = "code"
nitpicky = True
# Objects of other projects: no intersphinx (the docs build offline), so their names stay plain text.
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|torchvision|numpy|np|scipy|xarray|xr|dask|zennit|matplotlib|pandas|PIL|click|tqdm)(\..*)?"),
    (r"py:.*", r"(distributed|dask_jobqueue|netCDF4|seaborn)(\..*)?"),
    (r"py:.*", r"(pathlib|os|typing|collections|abc|dataclasses|contextlib|enum|builtins|types)(\..*)?"),
    (r"py:.*", r"(int|float|str|bool|bytes|dict|list|tuple|set|object|None|callable|type|Path|PathLike)"),
    (r"py:.*", r"(ndarray|tensor|Tensor|Dataset|DataArray|Figure|Module|Generator|Mapping|Sequence|Iterable)"),
]
# Names that docstrings of modules being rewritten refer to but that are not public (no __all__ entry), or refer to
# too briefly to resolve. To be fixed in those docstrings; until then, plain text.
nitpick_ignore = [
    ("py:data", "REQUEST_KEYS"),  # lrp_faces/cube/blocks.py: request_digest
    ("py:data", "SCORES"),  # lrp_faces/masking/_engine.py: BlockScores
    ("py:data", "CUBE_DIMS"),  # lrp_faces/masking/_inputs.py: CubeInputs
    ("py:func", "rows_per_pass"),  # lrp_faces/masking/_inputs.py: CubeInputs.batch_size
    ("py:meth", "key"),  # lrp_faces/zoo/demo.py: DemoSettings (":meth:`key`" in its summary line)
]

# -- autodoc, autosummary, numpydoc -----------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_inherit_docstrings = False  # keep torch's and zennit's docstrings off our pages
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True  # defaults as written in the source (``DEFAULT_FRACTIONS``), not their float repr
autodoc_default_options = {"exclude-members": "__init__, __new__, extra_repr"}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# -- doctest ----------------------------------------------------------------------------------------------------------
doctest_global_setup = f"""
import os, pathlib, tempfile
DOCS_DIR = pathlib.Path({str(DOCS)!r})
import matplotlib
matplotlib.use("Agg")
import numpy as np
import torch
torch.set_num_threads(1)
torch.manual_seed(0)
import lrp_faces
# examples that train models (tens of seconds) run only with LRP_FACES_SLOW_DOCTESTS=1
SLOW_DOCTESTS = os.environ.get("LRP_FACES_SLOW_DOCTESTS") == "1"
_doctest_directory = tempfile.TemporaryDirectory(prefix="lrp_faces_doctest_")
_doctest_cwd = os.getcwd()
os.chdir(_doctest_directory.name)
"""
doctest_global_cleanup = """
import matplotlib.pyplot as _plt
_plt.close("all")
os.chdir(_doctest_cwd)
_doctest_directory.cleanup()
"""
trim_doctest_flags = True
# Test the examples of these pages (doctest and testcode directives) and the ``>>>`` examples of the docstrings that
# autodoc pulls in (module docstrings and every Examples section): docs/_ext/lrp_faces_docs.py turns those into
# doctest directives that run in the namespace of their module, as doctest.testmod runs them.
doctest_test_doctest_blocks = "default"

# -- tutorials (sphinx-gallery) ---------------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": [str(DOCS.parent / "tutorials")],  # the scripts, executed at build time
    "gallery_dirs": ["tutorials"],  # the generated pages (not committed)
    "filename_pattern": r"/tutorial_",  # every tutorial is executed
    "ignore_pattern": r"/_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "write_computation_times": False,  # its pages load jQuery and DataTables from CDNs
    "remove_config_comments": True,
    "show_memory": False,
    "show_signature": False,
    "min_reported_time": 2,
    "first_notebook_cell": None,
    "matplotlib_animations": False,
    "reset_modules": ("matplotlib",),
    "capture_repr": ("__repr__",),
    "ignore_repr_types": r"matplotlib\.figure\.Figure",  # drawn by the scrapers instead
    "image_scrapers": ("matplotlib", "tutorial_figures.lrp_faces_figures"),  # docs/_ext: figures of lrp_faces.plots
}

# -- figures drawn at build time (matplotlib's plot directive) ------------------------------------------------------
plot_formats = [("png", 100)]
plot_html_show_formats = False
plot_html_show_source_link = False
plot_include_source = False
plot_rcparams = {"figure.autolayout": False}

# -- bibliography -----------------------------------------------------------------------------------------------------
bibtex_bibfiles = ["references.bib"]
bibtex_default_style = "plain"
bibtex_reference_style = "author_year"
bibtex_foot_reference_style = "foot"

# -- HTML -------------------------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"lrp-faces {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}
pygments_style = "sphinx"
pygments_dark_style = "monokai"
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = False
