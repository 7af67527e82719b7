"""What a tier does when a real component it needs is not on this machine.

`make test` (and so CI) installs and builds every component first, so there a missing one is a failure: a skip
would hide it. Elsewhere (a laptop without root, a partial setup) the tier is skipped with the command that
provides the component.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(message: str) -> NoReturn:
    """Fail in CI (``CI`` set), skip elsewhere; ``message`` names the component and how to get it."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
