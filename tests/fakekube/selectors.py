"""labelSelector and fieldSelector, with the semantics of k8s.io/apimachinery/pkg/labels and /pkg/fields.

Label operators: =, ==, !=, in, notin, exists (`key`), does-not-exist (`!key`), gt/lt (`key>1`).
`!=` and `notin` also match objects that lack the key (labels/selector.go Requirement.Matches).
Field operators: =, ==, != ; only the labels a type registers are accepted (else 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .resources import ResourceType
from .status import bad_request

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"[-A-Za-z0-9_.]*"
_EXISTS = re.compile(rf"^(?P<neg>!)?\s*(?P<key>{_KEY})$")
_EQUALITY = re.compile(rf"^(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})$")
_SET = re.compile(rf"^(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_GTLT = re.compile(rf"^(?P<key>{_KEY})\s*(?P<op>[<>])\s*(?P<value>-?\d+)$")

Labels = Mapping[str, str]
Matcher = Callable[[Labels], bool]


def _split_top_level(selector: str) -> list[str]:
    """Split on commas that are not inside `in (...)` parentheses."""
    parts, depth, current = [], 0, ""
    for ch in selector:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _requirement(text: str) -> Matcher:
    if m := _EXISTS.match(text):
        key, negated = m["key"], bool(m["neg"])
        return lambda labels: (key in labels) != negated
    if m := _EQUALITY.match(text):
        key, value = m["key"], m["value"]
        if m["op"] == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _SET.match(text):
        key = m["key"]
        values = {v.strip() for v in m["values"].split(",") if v.strip()}
        if m["op"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _GTLT.match(text):
        key, bound, greater = m["key"], int(m["value"]), m["op"] == ">"

        def compare(labels: Labels) -> bool:
            try:
                value = int(labels[key])
            except (KeyError, ValueError):
                return False
            return value > bound if greater else value < bound

        return compare
    raise bad_request(f"unable to parse requirement: {text!r}")


def label_matcher(selector: str | None) -> Matcher:
    """Parse a labelSelector; raises a 400 ApiError on bad syntax. Empty selects everything."""
    requirements = [_requirement(r) for r in _split_top_level(selector or "")]
    return lambda labels: all(req(labels) for req in requirements)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, Mapping) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


FieldMatcher = Callable[[Mapping[str, Any]], bool]


def field_matcher(rtype: ResourceType, selector: str | None) -> FieldMatcher:
    """Parse a fieldSelector for `rtype`; unknown field labels are a 400, as on the real server."""
    supported = {"metadata.name": "metadata.name", "metadata.namespace": "metadata.namespace", **rtype.fields}
    terms: list[tuple[str, bool, str]] = []
    for term in _split_top_level(selector or ""):
        m = re.match(r"^(?P<key>[^=!]+?)\s*(?P<op>==|=|!=)\s*(?P<value>.*)$", term)
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        if m["key"] not in supported:
            raise bad_request(f"field label not supported: {m['key']}")
        terms.append((supported[m["key"]], m["op"] == "!=", m["value"]))
    return lambda obj: all((_field_value(obj, path) == value) != negated for path, negated, value in terms)
