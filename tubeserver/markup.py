"""HTML built from values with escaping by default, for the dashboard's server-rendered pages.

Every string that goes into an element or an attribute passes through `html.escape` unless it
is `Html`, which only this module's builders make; so a tube name, a job body or a peer
address can never become markup, and a page is escaped by construction, not by care.
"""

from __future__ import annotations

import html
from collections.abc import Iterable


class Html(str):
    """Text that is already HTML: made by `el`, `join` and `raw` only."""

    __slots__ = ()


def esc(value: object) -> Html:
    """`value` as HTML text: Html as it is, None as nothing, anything else escaped."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    return Html(html.escape(str(value), quote=True))


def raw(text: str) -> Html:
    """Markup written in this program (never data): a doctype, an entity."""
    return Html(text)


def join(children: Iterable[object]) -> Html:
    return Html("".join(map(_child, children)))


def _child(child: object) -> str:
    if isinstance(child, str | int | float) or child is None:
        return esc(child)
    if isinstance(child, Iterable):
        return join(child)
    return esc(child)


def el(tag: str, *children: object, **attrs: object) -> Html:
    """<tag attrs>children</tag>. Attribute names: `class_` is `class`, `_` is `-`
    (`data_tube` is `data-tube`); None leaves an attribute out, True writes it bare."""
    parts = [tag]
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        key = name.rstrip("_").replace("_", "-")
        parts.append(key if value is True else f'{key}="{esc(value)}"')
    opening = "<" + " ".join(parts) + ">"
    if tag in _VOID:
        return Html(opening)
    return Html(opening + join(children) + f"</{tag}>")


_VOID = frozenset({"br", "hr", "img", "input", "link", "meta"})
