"""Event types of the memory memory; importing :mod:`memstream.producers` registers them."""

from __future__ import annotations
