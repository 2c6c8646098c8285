"""A griffe extension for the API reference: the docstrings' reST markup as Markdown.

The docstrings are plain prose with a little reST: roles (``:class:`Prediction```) and
literal blocks introduced by ``::``. mkdocstrings renders Markdown, so before rendering:

- a role naming a public object (``replicate_home.X``, ``replicate_home.emulator.X``) or a
  documented member of the class the docstring belongs to becomes a link to it; any other
  role becomes inline code;
- ``text::`` followed by an indented block becomes ``text:`` and a fenced Python block.

Loaded by mkdocs.yml (``extensions:`` of the python handler); not part of the site.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

import replicate_home
import replicate_home.emulator

_ROLE = re.compile(r":(?:class|meth|func|attr|mod|data|exc|obj):`~?([^`]+)`")
_LITERAL = re.compile(r"(?m)^(?P<lead>.*\S)::\n\n(?P<block>(?:(?:[ \t]+\S.*)?\n)+)")

#: Public name -> (its module, the identifier its reference entry is rendered under).
_PUBLIC = {
    **{
        name: (replicate_home, f"replicate_home.{name}")
        for name in replicate_home.__all__
        if name != "__version__"
    },
    **{
        name: (replicate_home.emulator, f"replicate_home.emulator.{name}")
        for name in replicate_home.emulator.__all__
    },
}


class SphinxRoles(griffe.Extension):
    """Rewrite reST roles and literal blocks of every docstring as Markdown."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        text = _LITERAL.sub(_fence, obj.docstring.value + "\n").rstrip("\n")
        obj.docstring.value = _ROLE.sub(lambda match: _reference(obj, match[1]), text)


def _fence(match: re.Match[str]) -> str:
    block = textwrap.dedent(match["block"]).strip("\n")
    return f"{match['lead']}:\n\n```python\n{block}\n```\n\n"


def _reference(obj: griffe.Object, target: str) -> str:
    """A Markdown link for ``target`` where the reference renders it, else inline code."""
    name = target.lstrip(".")
    if name in _PUBLIC:
        return f"[`{name}`][{_PUBLIC[name][1]}]"
    owner, _, member = name.rpartition(".")
    if not owner:  # a member of the docstring's own class (or of its method's class)
        cls = obj if obj.is_class else obj.parent
        if cls is not None and cls.is_class and _public_path(cls.name) == cls.path:
            owner = cls.name
    if owner in _PUBLIC and _documented(owner, member):
        return f"[`{name}`][{_PUBLIC[owner][1]}.{member}]"
    return f"`{name}`"


def _public_path(name: str) -> str | None:
    """Where the public object ``name`` is defined (``module.qualname``), if it is one."""
    if name not in _PUBLIC:
        return None
    module, _ = _PUBLIC[name]
    found = getattr(module, name, None)
    return f"{found.__module__}.{found.__qualname__}" if isinstance(found, type) else None


def _documented(owner: str, member: str) -> bool:
    """Whether public class ``owner`` has a method or property ``member`` with a docstring
    (the reference renders those; undocumented attributes are left out)."""
    module, _ = _PUBLIC[owner]
    cls = getattr(module, owner, None)
    if not isinstance(cls, type) or member.startswith("_"):
        return False
    for klass in cls.__mro__:
        if member in vars(klass):
            found = vars(klass)[member]
            found = getattr(found, "__func__", None) or getattr(found, "fget", None) or found
            return callable(found) and bool(getattr(found, "__doc__", None))
    return False
