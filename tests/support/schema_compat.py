"""The schema evolution rule of docs/schemas.md, as a check: what may change in a version.

Within a version only two kinds of change are compatible, because a consumer that holds
the released document must go on accepting every record, and the records already
written (a compacted topic keeps them for ever) must go on validating:

- annotations (``title``, ``description``, ``examples``, ``$comment``, ``default``);
- a new *optional* property in an object that is open (no ``additionalProperties:
  false``, no ``unevaluatedProperties``): the released document already accepted it.

Anything else (a new enum value, a new required field, a type, a pattern, closing an
object, removing a property) is incompatible and needs the next version.

    >>> incompatibilities({"enum": ["a"]}, {"enum": ["a", "b"]})
    ["$.enum: ['a'] became ['a', 'b']"]
"""

from __future__ import annotations

from typing import Any

ANNOTATIONS = frozenset({"title", "description", "examples", "$comment", "default"})


def incompatibilities(released: Any, current: Any, where: str = "$") -> list[str]:
    """Every change from ``released`` to ``current`` the rule does not allow."""
    if isinstance(released, dict) and isinstance(current, dict):
        return _objects(released, current, where)
    if isinstance(released, list) and isinstance(current, list) and len(released) == len(current):
        found: list[str] = []
        for index, (old, new) in enumerate(zip(released, current, strict=True)):
            found += incompatibilities(old, new, f"{where}[{index}]")
        return found
    if released != current:
        return [f"{where}: {released!r} became {current!r}"]
    return []


def _objects(released: dict[str, Any], current: dict[str, Any], where: str) -> list[str]:
    found: list[str] = []
    keys = (set(released) | set(current)) - ANNOTATIONS
    for key in sorted(keys):
        path = f"{where}.{key}"
        if key not in current:
            found.append(f"{path}: removed")
        elif key not in released:
            found.append(f"{path}: added")
        elif key == "properties" and isinstance(released[key], dict):
            found += _properties(released, current, path)
        else:
            found += incompatibilities(released[key], current[key], path)
    return found


def _properties(released: dict[str, Any], current: dict[str, Any], where: str) -> list[str]:
    old, new = released["properties"], current["properties"]
    if not isinstance(new, dict):
        return [f"{where}: no longer an object"]
    found: list[str] = []
    for name in sorted(set(old) | set(new)):
        path = f"{where}.{name}"
        if name not in new:
            found.append(f"{path}: removed")
        elif name in old:
            found += incompatibilities(old[name], new[name], path)
        elif not _open(current):
            found.append(f"{path}: added to a closed object")
        elif name in current.get("required", []):
            found.append(f"{path}: added as required")
    return found


def _open(schema: dict[str, Any]) -> bool:
    return schema.get("additionalProperties", True) is True and (
        "unevaluatedProperties" not in schema
    )
