"""A static HTML report of a study's results directory: settings, zoo, figures with readings, tables, file paths.

>>> from lrp_faces.report import write_report                                        # doctest: +SKIP
>>> write_report("study", images=faces)  # study/report/index.html from study/*.nc   # doctest: +SKIP

The page needs no network and no JavaScript: open ``report/index.html`` straight from disk. Figures are PNGs in the
page with SVGs linked beside them, both in ``report/figures/``.
"""
from ._page import FIGURES, RESULT_FILES, ReportError, write_report

__all__ = ["write_report", "ReportError", "RESULT_FILES", "FIGURES"]
