"""Reading v4only's inputs from files: the settings document and objects to review (YAML or JSON)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from webhook.core.settings import Settings, SettingsError, parse_settings


class InputError(ValueError):
    """An input file that cannot be read or parsed; the message names the file."""


def read_text(path: str) -> str:
    """The text of `path`, or of standard input for `-`."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None


def load_documents(text: str, *, source: str) -> list[Any]:
    """Every non-empty document in a YAML stream (JSON is YAML too); `List` kinds are flattened."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise InputError(f"{source} is not valid YAML or JSON: {_first_line(error)}") from None
    flat: list[Any] = []
    for document in documents:
        items = document.get("items") if isinstance(document, dict) else None
        if isinstance(document, dict) and str(document.get("kind", "")).endswith("List") and isinstance(items, list):
            flat.extend(items)
        else:
            flat.append(document)
    return flat


def load_settings(path: str | None) -> Settings:
    """Settings from a YAML file (the ConfigMap's `config.yaml`); defaults when no file is given."""
    if path is None:
        return Settings()
    documents = load_documents(read_text(path), source=path)
    if len(documents) > 1:
        raise InputError(f"{path}: expected one settings document, found {len(documents)}")
    try:
        return parse_settings(documents[0] if documents else None)
    except SettingsError as error:
        raise InputError(f"{path}: {error}") from None


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
