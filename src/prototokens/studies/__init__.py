"""The studies: each a module with a ``Config``, ``run(lm, config, folder)`` and
``report(folder)`` (see common.py). Adding a study: one module and one line here."""

from __future__ import annotations

from pathlib import Path

from . import arrangements, capacity, connectivity, geometry, locality, probe, sharing
from .common import read_config

STUDIES = {module.NAME: module for module in (capacity, arrangements, sharing, locality, connectivity, probe, geometry)}


def write_report(folder: "str | Path") -> list[Path]:
    """Write the report of a study folder: the study its ``study.json`` names, else capacity
    (whose run folders hold a ``run.json`` instead, and may be nested)."""
    return STUDIES[read_config(folder).get("study", "capacity")].report(folder)
