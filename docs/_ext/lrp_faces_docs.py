"""Sphinx helpers for the lrp-faces docs.

* ``missing-reference``: resolve a reference to a re-exported name (``lrp_faces.vgg16``) to the page that documents
  the same object under its public module (``lrp_faces.models.vgg16``).
* ``env-check-consistency``: warn about every public module of the package without a page or section, every name
  in the ``__all__`` of a public module that has no entry in the API reference, and every top-level name the
  top-level page does not list, so that the reference cannot fall behind the code.
* ``.. click-help:: package.module:command``: the ``--help`` text of a click command and of all its subcommands.
* ``autodoc-process-docstring``: a docstring's ``>>>`` examples run, in the doctest build, in the namespace of the
  module that defines them.
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

#: Values that may be shared by unrelated names (small ints, strings, tuples): matched by name as well as identity.
IMMUTABLE = (str, bytes, int, float, bool, tuple, frozenset, type(None))
_MISSING = object()


def _import_object(name: str):
    """The object a dotted name refers to, as attribute access sees it, or ``_MISSING``.

    ``lrp_faces.masking.curves`` is the function the package exports, not the submodule of the same name; a
    submodule is imported only where no attribute has the name.
    """
    parts = name.split(".")
    try:
        value = importlib.import_module(parts[0])
    except Exception:  # noqa: BLE001 - any import problem means "not an object of ours"
        return _MISSING
    for index, attribute in enumerate(parts[1:], start=2):
        try:
            value = getattr(value, attribute)
        except AttributeError:
            try:
                value = importlib.import_module(".".join(parts[:index]))
            except Exception:  # noqa: BLE001
                return _MISSING
    return value


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


def public_modules(package: str = "lrp_faces") -> list[str]:
    """Every public module of ``package``: no part of its dotted name starts with an underscore."""
    import pkgutil

    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _owned_names(module, package) -> list[str]:
    """The names of ``module.__all__`` that its package does not re-export under the same name."""
    if package is None:
        return list(module.__all__)
    public = getattr(package, "__all__", ())
    return [name for name in module.__all__
            if not (name in public and getattr(package, name, _MISSING) is getattr(module, name, None))]


def check_api_coverage(app, env):
    """Warn about public modules without a page or section, and public names without an entry.

    Every name in the ``__all__`` of a public module must be documented: under that module, or as the same object
    under another documented name (a package that re-exports it; a constant also needs the same name). A module
    that exports names its package does not re-export needs its own section (``.. automodule::``), so that its
    docstring is in the reference (unless the package shadows it with a function of the same name, whose section
    cannot be an index target). Modules without ``__all__`` are covered by their package.
    """
    objects = env.domaindata["py"]["objects"]
    modules = env.domaindata["py"]["modules"]
    if not any(name.startswith("lrp_faces") for name in objects):
        return  # a build without the API reference
    by_identity: dict[int, set[str]] = {}
    for name, entry in objects.items():
        if name.startswith("lrp_faces") and not getattr(entry, "aliased", False):
            value = _import_object(name)
            if value is not _MISSING:
                by_identity.setdefault(id(value), set()).add(name.rsplit(".", 1)[-1])
    for module_name in public_modules():
        if module_name.endswith("__main__"):
            continue
        module = importlib.import_module(module_name)
        if getattr(module, "__all__", None) is None:
            continue
        parent = module_name.rpartition(".")[0]
        package = importlib.import_module(parent) if parent else None
        owned = _owned_names(module, package)
        # a module that its package shadows with a function of the same name (lrp_faces.masking.curves) cannot be a
        # py:module target beside the function: its section is documented with :no-index:
        shadowed = package is not None and getattr(package, module_name.rpartition(".")[2], module) is not module
        if owned and not shadowed and module_name not in modules:
            logger.warning(f"the API reference has no page or section for the public module {module_name} "
                           f"(add ``.. automodule:: {module_name}`` to the page of its package in docs/api/)",
                           type="lrp_faces", subtype="api_coverage")
        missing = []
        for name in module.__all__:
            value = getattr(module, name, _MISSING)
            names = by_identity.get(id(value), set())
            documented = f"{module_name}.{name}" in objects or (
                names and (not isinstance(value, IMMUTABLE) or name in names))
            if not documented:
                missing.append(name)
        if missing:
            logger.warning(f"the API reference lacks {len(missing)} public name(s) of {module_name}: "
                           f"{', '.join(missing)} (add them to the page of {parent or module_name} in docs/api/)",
                           type="lrp_faces", subtype="api_coverage")


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


def docstring_doctests(app, what, name, obj, options, lines):
    """Run a docstring's ``>>>`` examples in the namespace of the module that defines it, as ``doctest.testmod`` does.

    The doctest builder runs the examples of a page in one namespace that holds only ``doctest_global_setup``, but
    a docstring's examples may use the names of their own module. Each block of examples becomes a ``doctest``
    directive of a group named after that module, which a hidden ``testsetup`` fills with the module's globals
    (``__file__`` included, as ``doctest.testmod`` has it; the page's own ``__name__`` and builtins stay). The HTML
    is the same.
    """
    if not name.startswith("lrp_faces") or not any(line.lstrip().startswith(">>>") for line in lines):
        return
    module = obj if inspect.ismodule(obj) else inspect.getmodule(obj)
    module_name = getattr(module, "__name__", "")
    if not module_name.startswith("lrp_faces"):
        module_name = name.rsplit(".", 1)[0] if what != "module" else name
    group = f"docstring:{module_name}"
    converted = [f".. testsetup:: {group}", "", "   import importlib as _importlib",
                 f"   globals().update({{_key: _value for _key, _value in "
                 f"vars(_importlib.import_module({module_name!r})).items() "
                 f"if _key == '__file__' or not _key.startswith('__')}})", ""]
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.lstrip()
        starts_block = stripped.startswith(">>>") and (index == 0 or not lines[index - 1].strip())
        if not starts_block:
            converted.append(line)
            index += 1
            continue
        indent = line[:len(line) - len(stripped)]
        converted += [f"{indent}.. doctest:: {group}", ""]
        while index < len(lines) and lines[index].strip():
            converted.append("   " + lines[index])
            index += 1
    lines[:] = converted


#: Functions whose ``__signature__`` autodoc replaced since the last :func:`restore_signatures` (kept off the
#: environment, which is pickled).
_PRESERVED: list = []


def _own_signature_holder(obj):
    """The object whose ``__dict__`` holds ``obj``'s ``__signature__`` (a bound method's function), or None."""
    target = getattr(obj, "__func__", obj)
    return target if isinstance(getattr(target, "__dict__", None), dict) else None


def _preserved_defaults(signature) -> bool:
    """Whether ``signature`` is one that ``autodoc_preserve_defaults`` made (its defaults are source text)."""
    from sphinx.ext.autodoc.preserve_defaults import DefaultValue

    return isinstance(signature, inspect.Signature) and any(
        isinstance(parameter.default, DefaultValue) for parameter in signature.parameters.values())


def note_preserved_defaults(app, obj, bound_method):
    """Remember each function whose signature ``autodoc_preserve_defaults`` replaced, to undo it later.

    To show defaults as written (``DEFAULT_FRACTIONS``), autodoc sets ``__signature__`` on the live function, with
    the source text of each default in place of its value. Code that reads a default from the signature
    (``lrp_faces.parameters``-style checks, ``lrp-faces plan``) would then get that text, e.g. in the doctests, which
    run in the same process after the pages are read.
    """
    holder = _own_signature_holder(obj)
    if holder is not None and _preserved_defaults(holder.__dict__.get("__signature__")):
        _PRESERVED.append(holder)


def restore_signatures(app, *args):
    """Give the functions noted by :func:`note_preserved_defaults` their own signatures back."""
    while _PRESERVED:
        holder = _PRESERVED.pop()
        if _preserved_defaults(holder.__dict__.get("__signature__")):
            del holder.__dict__["__signature__"]


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
    app.connect("autodoc-process-docstring", docstring_doctests, priority=900)  # after numpydoc
    app.connect("autodoc-before-process-signature", note_preserved_defaults, priority=900)  # after autodoc's own
    app.connect("autodoc-process-signature", restore_signatures)  # once the signature is rendered
    app.connect("env-updated", restore_signatures)
    app.connect("env-check-consistency", check_api_coverage)
    app.connect("env-check-consistency", check_top_level)
    app.add_directive("click-help", ClickHelp)
    app.connect("env-get-outdated", always_reread_cli)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
