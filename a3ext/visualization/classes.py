"""ImageNet classes by index or by name.

May import: no other a3ext module.
"""
from __future__ import annotations

import difflib
from collections.abc import Sequence

__all__ = ["UnknownClassError", "resolve_class", "short_label"]


class UnknownClassError(ValueError):
    """A class given by a name no label matches, an ambiguous name, or an index out of range."""


def short_label(label: str) -> str:
    """The first synonym of an ImageNet label: ``'tabby, tabby cat'`` -> ``'tabby'``."""
    return label.split(",")[0].strip()


def _norm(text: str) -> str:
    return " ".join(text.replace("_", " ").lower().split())


def resolve_class(spec, labels: Sequence[str]) -> int:
    """Class index of ``spec``: an int or a string of digits (an index into
    ``labels``), or a class name matched case-insensitively against a whole
    label (``'tiger cat'``) or one of its comma-separated synonyms
    (``'Sciurus niger'``); underscores count as spaces.

    Raises :class:`UnknownClassError` for an index out of range, for a name that
    matches several classes (listing them; use the index), and for an unknown
    name (listing the closest labels with their indices).
    """
    n = len(labels)
    if isinstance(spec, bool):
        raise UnknownClassError(f"class must be an index or a name, got {spec!r}")
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().lstrip("-").isdigit()):
        index = int(spec)
        if not 0 <= index < n:
            raise UnknownClassError(f"class index must be in [0, {n}), got {index}")
        return index
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownClassError(f"class must be an index or a non-empty name, got {spec!r}")
    query = _norm(spec)
    matches = [i for i, label in enumerate(labels)
               if query == _norm(label) or query in (_norm(s) for s in label.split(","))]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        listed = "; ".join(f"{i} {labels[i]!r}" for i in matches)
        raise UnknownClassError(f"class name {spec!r} is ambiguous, it matches {len(matches)} classes: "
                                f"{listed}; pass the index instead")
    synonyms: dict[str, int] = {}
    for i, label in enumerate(labels):
        for s in [label] + label.split(","):
            synonyms.setdefault(_norm(s), i)
    close = difflib.get_close_matches(query, list(synonyms), n=8, cutoff=0.6)
    contains = [s for s in synonyms if query in s and s not in close]
    hits = []
    for s in close + contains:
        i = synonyms[s]
        if i not in hits:
            hits.append(i)
    hits = hits[:8]
    hint = ("; close matches: " + "; ".join(f"{i} {labels[i]!r}" for i in hits)) if hits else ""
    raise UnknownClassError(f"unknown class name {spec!r}{hint} (classes are ImageNet label names "
                            f"or indices 0-{n - 1})")
