"""Subcommands for long-term memory: ``forget``, ``extend-ttl`` and ``stats``."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    return None
