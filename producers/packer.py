"""Packing commands for the wire: redis-py's hiredis packer without its per-argument pass.

redis-py's ``HiredisRespSerializer.pack`` first rebuilds the argument tuple in Python
(turning ``bytearray`` and ``memoryview`` into ``bytes``, and splitting a first argument
that holds spaces) and only then calls ``hiredis.pack_command``. That pass costs as much
as the packing itself: about 4 µs of one ``FCALL ms_append``, 3 µs per event of an
``ms_append_many`` call. :class:`FastPacker` hands the tuple to hiredis as it is when
that gives the same bytes (a first argument without a space, and only the types hiredis
takes), and leaves everything else to redis-py's packer, so what goes on the wire, and
every error, is what redis-py would have produced. :func:`pack_many` does the same for
the asyncio connections, whose packer is redis-py's pure-Python one (the async reader's
one-timer exchange, ``memstream.projections.async_wire``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

_pack: Any
try:
    from hiredis import pack_command as _pack
except ImportError:  # hiredis is a dependency, but redis-py works without it
    _pack = None


def _hiredis_bytes(args: Sequence[Any]) -> bytes | None:
    """``args`` packed by hiredis when that gives redis-py's bytes, else None."""
    first = args[0]
    # redis-py splits a first argument on spaces ("CLIENT SETNAME" as one string);
    # without a space the split is the argument itself, encoded as hiredis does.
    if _pack is not None and type(first) is str and " " not in first:
        try:
            packed: bytes = _pack(args)
            return packed
        except TypeError:
            pass  # a bytearray, a bool, None...: redis-py converts or names it
    return None


class FastPacker:
    """Wraps redis-py's command packer (``slow``); see the module docstring."""

    __slots__ = ("_slow",)

    def __init__(self, slow: Any) -> None:
        self._slow = slow

    def pack(self, *args: Any) -> list[bytes]:
        """The packed command ``args`` (name first), as a list of chunks."""
        packed = _hiredis_bytes(args)
        if packed is not None:
            return [packed]
        out: list[bytes] = self._slow.pack(*args)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._slow, name)


def faster(packer: Any) -> Any:
    """``packer`` wrapped in a :class:`FastPacker` when it is redis-py's hiredis packer
    and hiredis can be called directly; otherwise ``packer`` itself."""
    if _pack is None or type(packer).__name__ != "HiredisRespSerializer":
        return packer
    return FastPacker(packer)


def pack_many(commands: Sequence[tuple[Any, ...]], slow: Callable[..., list[bytes]]) -> bytes:
    """``commands`` packed into one buffer, each as :meth:`FastPacker.pack` packs it:
    hiredis when that gives redis-py's bytes, else ``slow`` (a connection's own
    ``pack_command``), so the bytes and the errors are redis-py's."""
    out: list[bytes] = []
    for args in commands:
        packed = _hiredis_bytes(args)
        if packed is None:
            out.extend(slow(*args))
        else:
            out.append(packed)
    return b"".join(out)
