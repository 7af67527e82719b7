"""Markers by directory: tests/<tier>/ gets the <tier> marker, so `pytest -m unit` picks the fast tier."""

from __future__ import annotations

from pathlib import Path

import pytest

TIERS = ("unit", "cluster", "triton", "node", "chart", "kind")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
