"""The Python scripts under hack/, imported from their paths for tests (hack/ is scripts, not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HACK = Path(__file__).resolve().parents[1] / "hack"


def hack_module(name: str) -> ModuleType:
    """``hack/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, HACK / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves models' annotations through sys.modules
    spec.loader.exec_module(module)
    return module
