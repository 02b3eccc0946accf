"""Sphinx helpers for the lrp-faces docs.

* ``missing-reference``: resolve a reference to a re-exported name (``lrp_faces.vgg16``) to the page that documents
  the same object under its public module (``lrp_faces.models.vgg16``).
* ``env-check-consistency``: warn about every name in the ``__all__`` of a documented module that has no entry in
  the API reference (and every top-level name the top-level page does not list), so that the reference cannot fall
  behind the code.
* ``.. click-help:: package.module:command``: the ``--help`` text of a click command and of all its subcommands.
"""
from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import click
from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: API page -> the module whose ``__all__`` it must cover.
API_MODULES = {
    "api/nn": "lrp_faces.nn",
    "api/models": "lrp_faces.models",
    "api/attribution": "lrp_faces.attribution",
    "api/methods": "lrp_faces.methods",
    "api/canonizers": "lrp_faces.canonizers",
    "api/rules": "lrp_faces.rules",
    "api/faces": "lrp_faces.faces",
    "api/zoo": "lrp_faces.zoo",
    "api/cube": "lrp_faces.cube",
    "api/masking": "lrp_faces.masking",
    "api/analysis": "lrp_faces.analysis",
    "api/plots": "lrp_faces.plots",
    "api/report": "lrp_faces.report",
    "api/cli": "lrp_faces.cli.study",
}
_MISSING = object()


def _import_object(name: str):
    """The object a dotted name refers to, or ``_MISSING``."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:split]))
        except Exception:  # noqa: BLE001 - any import problem means "not this split"
            continue
        try:
            for attribute in parts[split:]:
                value = getattr(value, attribute)
        except AttributeError:
            return _MISSING
        return value
    return _MISSING


def _documented_objects(env) -> dict[int, str]:
    """id(object) -> documented name, for every object of our package in the Python domain."""
    cache = getattr(env, "_lrp_faces_documented", None)
    if cache is not None and cache[0] == len(env.domaindata["py"]["objects"]):
        return cache[1]
    documented: dict[int, str] = {}
    for name, entry in sorted(env.domaindata["py"]["objects"].items()):
        if not name.startswith("lrp_faces") or getattr(entry, "aliased", False):
            continue
        value = _import_object(name)
        if value is not _MISSING and not isinstance(value, (str, int, float, bool, tuple, type(None))):
            documented.setdefault(id(value), name)
    env._lrp_faces_documented = (len(env.domaindata["py"]["objects"]), documented)
    return documented


#: The object types each role may refer to, to narrow a short name down.
ROLE_TYPES = {"meth": {"method", "classmethod", "staticmethod"}, "attr": {"attribute", "property"},
              "func": {"function"}, "class": {"class", "exception"}, "exc": {"exception", "class"},
              "data": {"data"}, "mod": {"module"}}


def _documented_name(env, target: str, module: str | None, klass: str | None, role: str = "obj") -> str | None:
    """The documented name that ``target`` (as written in a docstring or page) refers to, if any."""
    objects = env.domaindata["py"]["objects"]
    prefixes = [f"{module}.{klass}.", f"{module}."] if module and klass else [f"{module}."] if module else []
    candidates = [prefix + target for prefix in prefixes] + [target]
    for candidate in candidates:  # 1. the same object documented under its public name
        if not candidate.startswith("lrp_faces"):
            continue
        value = _import_object(candidate)
        if value is not _MISSING:
            documented = _documented_objects(env).get(id(value))
            if documented is not None:
                return documented
    # 2. a short name (``IMAGENET``, ``DemoSettings.key``) that exactly one documented object of ours ends with
    matches = sorted(name for name in objects if name.startswith("lrp_faces") and name.endswith(f".{target}")
                     and not getattr(objects[name], "aliased", False))
    if len(matches) > 1 and role in ROLE_TYPES:
        matches = [name for name in matches if objects[name].objtype in ROLE_TYPES[role]] or matches
    if len(matches) == 1:
        return matches[0]
    if klass and module:  # among several, the one of the class the reference is written in
        own = f"{module}.{klass}.{target}"
        if own in matches:
            return own
    if len(matches) > 1:  # among several methods of related classes, the one of the common base class
        owners = {name: _import_object(name.rsplit(".", 1)[0]) for name in matches}
        if all(isinstance(owner, type) for owner in owners.values()):
            bases = [name for name, owner in owners.items()
                     if all(issubclass(other, owner) for other in owners.values())]
            if len(bases) == 1:
                return bases[0]
    return None


def resolve_alias(app, env, node, contnode):
    """Resolve references to re-exported names, short names and undocumented attributes of documented classes.

    ``lrp_faces.vgg16`` links to ``lrp_faces.models.vgg16``; ``IMAGENET`` in a docstring of ``lrp_faces.models``
    links to ``lrp_faces.nn.IMAGENET``; ``NormalizedVGG.architecture`` (an instance attribute) links to the class.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip("~.")
    module, klass = node.get("py:module"), node.get("py:class")
    documented = _documented_name(env, target, module, klass, node.get("reftype", "obj"))
    if documented is None and "." in target:  # an attribute that is not documented: link its class
        owner = target.rsplit(".", 1)[0]
        documented = _documented_name(env, owner, module, klass)
        if documented is not None and env.domaindata["py"]["objects"][documented].objtype != "class":
            documented = None
    if documented is None:
        return None
    domain = env.get_domain("py")
    reftype = "obj"  # the role may not fit the object (e.g. :attr: resolved to its class)
    return domain.resolve_xref(env, node["refdoc"], app.builder, reftype, documented, node, contnode)


def reexported_data_docs(app, what, name, obj, options, lines):
    """Docstrings of constants re-exported by a package (``lrp_faces.masking.RELATIONS``).

    autodoc looks for a constant's ``#:`` comment or docstring in the module it is documented under; for a name
    re-exported from a submodule it finds none and falls back to the docstring of the value's type ("Built-in
    immutable sequence."). Use the comment in the submodule that defines the name instead, or nothing.
    """
    if what not in ("data", "attribute") or not name.startswith("lrp_faces"):
        return
    builtin = (inspect.getdoc(type(obj)) or "").strip().splitlines()
    shown = [line.strip() for line in lines if line.strip()]
    if shown and not (builtin and shown[0] == builtin[0].strip()):
        return
    package, _, attribute = name.rpartition(".")
    for module_name, module in sorted(sys.modules.items()):
        if not module_name.startswith(package + ".") or getattr(module, attribute, None) is not obj:
            continue
        try:
            comment = ModuleAnalyzer.for_module(module_name).find_attr_docs().get(("", attribute))
        except Exception:  # noqa: BLE001 - no source to analyse
            continue
        if comment:
            lines[:] = list(comment)
            return
    lines[:] = []


def public_bases(app, name, obj, options, bases):
    """Show the first public ancestor instead of a private base class (``_LinearRule`` -> ``FastRule``)."""
    for index, base in enumerate(bases):
        while isinstance(base, type) and base.__name__.startswith("_") and base.__bases__:
            base = base.__bases__[0]
        bases[index] = base


def check_api_coverage(app, env):
    """Warn about public names (``__all__``) of documented modules that the API reference lacks."""
    objects = env.domaindata["py"]["objects"]
    for docname, module_name in API_MODULES.items():
        if docname not in env.found_docs:
            continue
        module = importlib.import_module(module_name)
        public = getattr(module, "__all__", None)
        if public is None:
            logger.warning(f"{module_name} has no __all__; the API page {docname} cannot be checked",
                           location=docname)
            continue
        missing = [name for name in public if f"{module_name}.{name}" not in objects]
        if missing:
            logger.warning(f"the API reference lacks {len(missing)} public name(s) of {module_name}: "
                           f"{', '.join(missing)} (add them to docs/{docname}.rst)", location=docname)


def check_top_level(app, env):
    """Warn about names of ``lrp_faces.__all__`` that the top-level page (api/lrp_faces.rst) does not list."""
    if "api/lrp_faces" not in env.found_docs:
        return
    import re

    import lrp_faces

    text = Path(env.doc2path("api/lrp_faces")).read_text(encoding="utf-8")
    listed = set(re.findall(r"``(?:lrp_faces\.)?(\w+)``", text)) | set(re.findall(r"py:data:: (\w+)", text))
    missing = [name for name in lrp_faces.__all__ if name not in listed]
    if missing:
        logger.warning(f"api/lrp_faces.rst does not list the top-level name(s) {', '.join(missing)}",
                       location="api/lrp_faces")


class ClickHelp(Directive):
    """``.. click-help:: lrp_faces.cli:main`` renders the help of a command and of every subcommand."""

    required_arguments = 1
    has_content = False

    def run(self):
        module_name, _, attribute = self.arguments[0].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        program = self.state.document.settings.env.config.click_program_name
        sections = []
        self._render(command, program, None, sections, level=0)
        return sections

    def _render(self, command: click.Command, name: str, parent, sections: list, level: int):
        settings = {**command.context_settings, "terminal_width": 88, "max_content_width": 88}
        context = click.Context(command, info_name=name, parent=parent, **settings)
        text = command.get_help(context)
        if level == 0:
            sections.append(nodes.literal_block(text, text, language="text"))
        else:
            section = nodes.section(ids=[nodes.make_id(f"cli-{context.command_path}")])
            title = nodes.title()
            title += nodes.literal(context.command_path, context.command_path)
            section += title
            summary = command.get_short_help_str(limit=200)
            if summary:
                section += nodes.paragraph(summary, summary)
            section += nodes.literal_block(text, text, language="text")
            sections.append(section)
        if isinstance(command, click.Group):
            for sub_name in command.list_commands(context):
                sub_command = command.get_command(context, sub_name)
                if sub_command is not None and not sub_command.hidden:
                    self._render(sub_command, sub_name, context, sections, level + 1)


def always_reread_cli(app, env, added, changed, removed):
    """The command line page renders the code's ``--help``: read it again on every build."""
    return [docname for docname in env.found_docs if docname == "api/cli"]


def setup(app):
    app.add_config_value("click_program_name", "lrp-faces", "env")
    app.connect("missing-reference", resolve_alias)
    app.connect("autodoc-process-bases", public_bases)
    app.connect("autodoc-process-docstring", reexported_data_docs)
    app.connect("env-check-consistency", check_api_coverage)
    app.connect("env-check-consistency", check_top_level)
    app.add_directive("click-help", ClickHelp)
    app.connect("env-get-outdated", always_reread_cli)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
