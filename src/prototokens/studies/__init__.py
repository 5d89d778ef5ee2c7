"""The studies: each a module with a ``Config``, ``run(lm, config, folder)`` and
``report(folder)`` (see common.py). Adding a study: one module and one line here."""

from __future__ import annotations

from pathlib import Path

from . import arrangements, connectivity, geometry, locality, probe, sharing
from .common import read_config

STUDIES = {module.NAME: module for module in (arrangements, sharing, locality, connectivity, probe, geometry)}


def write_report(folder: "str | Path") -> list[Path]:
    """Write the report of a study folder (its ``study.json`` names the study), or of the
    capacity run folders at or below ``folder``."""
    from .report import write

    name = read_config(folder).get("study")
    return STUDIES[name].report(folder) if name else write(folder)
