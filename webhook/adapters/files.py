"""Reading v4only's inputs from files: the settings document and objects to review (YAML or JSON).

Objects come back as plain JSON trees (dicts, lists, str, int, float, bool, None), whatever the input
format: JSON is read as JSON (surrogate-pair escapes, which `json.dumps` and `jq -a` write, decode to
the character they stand for), YAML with the safe loader minus its timestamp rule (an unquoted
`creationTimestamp` stays the text it was), and every document is rebuilt as a tree, so two places
that share one YAML anchor are two objects and a patch to one never shows up in the other.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import yaml

from webhook.core.settings import Settings, SettingsError, parse_settings

# Above any stream of manifests a person reviews (a whole kustomize build is well under 1 MiB), and
# bounded so a wrong file fails in a moment: PyYAML takes ~0.2 s and ~6 MB of memory per MiB.
MAX_INPUT_BYTES = 8 * 1024 * 1024


class InputError(ValueError):
    """An input file that cannot be read or parsed; the message names the file."""


class _Loader(yaml.SafeLoader):
    """The safe loader without the YAML 1.1 timestamp rule: Kubernetes times are strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def source_name(path: str) -> str:
    return "standard input" if path == "-" else path


def read_input(path: str) -> bytes:
    """The bytes of `path`, or of standard input for `-`, up to MAX_INPUT_BYTES."""
    if path == "-":
        return _read_limited(sys.stdin.buffer, "standard input")
    try:
        with Path(path).open("rb") as stream:
            return _read_limited(stream, path)
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None


def _read_limited(stream: BinaryIO, source: str) -> bytes:
    data = stream.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"{source} is over {MAX_INPUT_BYTES // (1024 * 1024)} MiB: too large to review")
    return data


def load_documents(data: bytes, *, source: str) -> list[Any]:
    """Every non-empty document of a JSON value (or several, one after another) or a YAML stream;
    `List` kinds are flattened."""
    text = _decode(data, source)
    documents = _json_documents(text, source) if text.lstrip()[:1] in ("{", "[") else _yaml_documents(text, source)
    flat: list[Any] = []
    for index, document in enumerate(documents):
        tree = _as_tree(document, source, index)
        items = tree.get("items") if isinstance(tree, dict) else None
        kind = str(tree.get("kind", "")) if isinstance(tree, dict) else ""
        if kind.endswith("List") and isinstance(items, list):
            flat.extend(_with_kind(item, kind.removesuffix("List")) for item in items)
        else:
            flat.append(tree)
    return flat


def _with_kind(item: Any, kind: str) -> Any:
    """The API server leaves `kind` off the items of a typed list (NodeList); `kubectl get -o yaml` keeps it."""
    if isinstance(item, dict) and "kind" not in item and kind:
        return {"kind": kind, **item}
    return item


def _decode(data: bytes, source: str) -> str:
    if b"\0" in data:
        raise InputError(f"{source} is binary, not YAML or JSON")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{source} is not UTF-8 text (byte {error.start})") from None


def _json_documents(text: str, source: str) -> list[Any]:
    decoder, position = json.JSONDecoder(), 0
    documents: list[Any] = []
    while True:
        position = _skip_space(text, position)
        if position == len(text):
            return documents
        try:
            document, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            where = f"line {error.lineno}, column {error.colno}"
            raise InputError(f"{source} is not valid YAML or JSON: {where}: {error.msg}") from None
        documents.append(document)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _yaml_documents(text: str, source: str) -> list[Any]:
    try:
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise InputError(f"{source} is not valid YAML or JSON: {where}{error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise InputError(f"{source} is not valid YAML or JSON: {_first_line(error)}") from None


def _as_tree(document: Any, source: str, index: int) -> Any:
    """A fresh JSON tree: no shared nodes (YAML aliases), nothing JSON cannot hold."""
    try:
        return orjson.loads(orjson.dumps(document))
    except orjson.JSONEncodeError as error:
        raise InputError(f"{source}: document {index + 1} is not a JSON object tree: {error}") from None


def load_settings(path: str | None) -> Settings:
    """Settings from a YAML file (the ConfigMap's `config.yaml`); defaults when no file is given."""
    if path is None:
        return Settings()
    documents = load_documents(read_input(path), source=source_name(path))
    if len(documents) > 1:
        raise InputError(f"{path}: expected one settings document, found {len(documents)}")
    try:
        return parse_settings(documents[0] if documents else None)
    except SettingsError as error:
        raise InputError(f"{path}: {error}") from None


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
