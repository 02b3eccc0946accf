"""Check that the built HTML pages load nothing from the network.

After an HTML build, every page is read and each resource it loads is checked: the ``src`` of ``script``, ``img``,
``iframe``, ``embed``, ``source``, ``audio``, ``video`` and ``track``, the ``href`` of ``link`` (stylesheets, icons,
preloads) and the ``data`` of ``object``. A remote one (``http:``, ``https:``, ``ftp:`` or ``//host``) is a warning,
so is a local one that is not in the output (for example a MathJax that was not bundled), and so is a remote
``url(...)`` or ``@import`` in the CSS files of ``_static``. Links that a reader follows (``<a href>``) are not
loaded and are not checked. With ``-W`` a warning fails the build.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sphinx.util import logging

logger = logging.getLogger(__name__)

#: tag -> the attribute that names a resource the browser loads with the page
LOADED = {"script": "src", "img": "src", "iframe": "src", "embed": "src", "source": "src", "audio": "src",
          "video": "src", "track": "src", "link": "href", "object": "data", "input": "src"}
REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//|^(?:https?|ftp):", re.IGNORECASE)
CSS_REMOTE = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:https?:)?//[^'")\s]+)""", re.IGNORECASE)


class _Resources(HTMLParser):
    """The resources one page loads: (tag, url, line)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str, int]] = []

    def handle_starttag(self, tag, attrs):
        attribute = LOADED.get(tag)
        values = dict(attrs)
        if attribute and values.get(attribute):
            self.found.append((tag, values[attribute], self.getpos()[0]))
        if tag in ("img", "source") and values.get("srcset"):
            for candidate in values["srcset"].split(","):
                if candidate.strip():
                    self.found.append((tag, candidate.split()[0], self.getpos()[0]))

    handle_startendtag = handle_starttag


def page_problems(page: Path, outdir: Path) -> list[str]:
    """What ``page`` loads from the network, or names but the output lacks."""
    parser = _Resources()
    parser.feed(page.read_text(encoding="utf-8"))
    problems = []
    for tag, url, line in parser.found:
        if url.startswith(("data:", "#", "about:", "javascript:")):
            continue
        if REMOTE.match(url):
            problems.append(f"line {line}: <{tag}> loads a remote resource, {url}")
            continue
        path = unquote(urlsplit(url).path)
        if not path:
            continue
        target = (outdir / path.lstrip("/")) if path.startswith("/") else (page.parent / path)
        if not target.resolve().is_file():
            problems.append(f"line {line}: <{tag}> loads {url}, which is not in the output")
    return problems


def stylesheet_problems(stylesheet: Path) -> list[str]:
    text = stylesheet.read_text(encoding="utf-8", errors="replace")
    return [f"loads a remote resource, {url}" for url in CSS_REMOTE.findall(text)]


def check_offline(app, exception):
    """``build-finished``: warn about every page or stylesheet that loads something from the network."""
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    pages = sorted(outdir.rglob("*.html"))
    problems = [(page, problem) for page in pages for problem in page_problems(page, outdir)]
    problems += [(stylesheet, problem) for stylesheet in sorted((outdir / "_static").rglob("*.css"))
                 for problem in stylesheet_problems(stylesheet)]
    for file, problem in problems:
        logger.warning(f"{file.relative_to(outdir)}: {problem} (the docs must work offline)",
                       type="lrp_faces", subtype="offline")
    if not problems:
        logger.info(f"offline check: the {len(pages)} pages load nothing remote, and every file they load is there")


def setup(app):
    app.connect("build-finished", check_offline, priority=900)  # after the assets are copied (priority 500)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
