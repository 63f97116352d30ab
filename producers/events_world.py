"""Event types of the world memory; importing :mod:`memstream.producers` registers them."""

from __future__ import annotations
