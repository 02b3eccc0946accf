"""A sphinx-gallery image scraper for the figures of :mod:`lrp_faces.plots`.

lrp_faces builds its figures without pyplot (nothing is left open in pyplot's global state), so sphinx-gallery's
matplotlib scraper, which saves pyplot's open figures, does not see them. This scraper saves every
:class:`matplotlib.figure.Figure` that a tutorial's code block left in its namespace (assigned, or the block's last
expression) and that pyplot does not manage, once each.
"""
from __future__ import annotations

from matplotlib.figure import Figure


def lrp_faces_figures(block, block_vars, gallery_conf) -> str:
    """``image_scrapers`` entry: save the block's new pyplot-free figures and return their reST."""
    from sphinx_gallery.scrapers import figure_rst

    saved = block_vars.setdefault("lrp_faces_saved_figures", set())
    figures = [value for value in block_vars["example_globals"].values()
               if isinstance(value, Figure) and value.canvas.manager is None and id(value) not in saved]
    paths = []
    for figure, path in zip(figures, block_vars["image_path_iterator"]):
        figure.savefig(path, dpi=100)
        saved.add(id(figure))
        paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])
