"""Sphinx configuration of the lrp-faces documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html``
Doctest: ``sphinx-build -W --keep-going -b doctest docs docs/_build/doctest``
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
    "numpydoc",
    "sphinxcontrib.bibtex",
    "sphinx_copybutton",
    "lrp_faces_docs",  # docs/_ext: alias resolution, API coverage check, the click help directive
]

exclude_patterns = ["_build", "scripts", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]
default_role = "code"
nitpicky = True
# Objects of other projects: no intersphinx (the docs build offline), so their names stay plain text.
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|torchvision|numpy|np|scipy|xarray|xr|dask|zennit|matplotlib|pandas|PIL|click|tqdm)(\..*)?"),
    (r"py:.*", r"(pathlib|os|typing|collections|abc|dataclasses|contextlib|enum|builtins|types)(\..*)?"),
    (r"py:.*", r"(int|float|str|bool|bytes|dict|list|tuple|set|object|None|callable|type|Path|PathLike)"),
    (r"py:.*", r"(ndarray|tensor|Tensor|Dataset|DataArray|Figure|Module|Generator|Mapping|Sequence|Iterable)"),
]

# -- autodoc, autosummary, numpydoc -----------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_inherit_docstrings = False  # keep torch's and zennit's docstrings off our pages
autodoc_member_order = "bysource"
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
# Test the examples of these pages (doctest and testcode directives), not the ``>>>`` blocks of the docstrings that
# autodoc pulls in: those belong to the modules' own tests.
doctest_test_doctest_blocks = ""

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
