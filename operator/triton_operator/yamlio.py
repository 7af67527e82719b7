"""YAML in and out, the way manifests are read by people and by kubectl."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import yaml


class _NoAliasDumper(yaml.SafeDumper):
    """Never emits &anchors: shared Python objects would otherwise become YAML aliases that confuse readers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(document: Any) -> str:
    """One document, keys in the order they were built."""
    return yaml.dump(document, Dumper=_NoAliasDumper, sort_keys=False, width=120)


def dump_all_yaml(documents: Iterable[Any]) -> str:
    """Several documents separated by ``---``."""
    return "---\n".join(dump_yaml(document) for document in documents)


def load_all_yaml(text: str) -> Iterator[dict[str, Any]]:
    """Every non-empty document of a multi-document YAML stream."""
    for document in yaml.safe_load_all(text):
        if document:
            yield document
