"""A loopback TCP proxy that can drop a connection after a command reached Redis but
before its reply reached the client: the case an idempotency key exists for."""

from __future__ import annotations

import contextlib
import socket
import threading


class DroppingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.drop_after: bytes | None = None
        self.dropped = 0
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes) -> None:
        """Drop the reply to the next request containing ``marker``."""
        self.drop_after = marker

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            state = {"armed": False}
            threading.Thread(
                target=self._pump, args=(client, upstream, state, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, state, False), daemon=True
            ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, state: dict[str, bool], up: bool
    ) -> None:
        try:
            while chunk := src.recv(65536):
                if up and self.drop_after is not None and self.drop_after in chunk:
                    self.drop_after = None
                    state["armed"] = True
                elif not up and state["armed"]:
                    # The command ran on the server; the client never hears back.
                    self.dropped += 1
                    for s in (src, dst):
                        s.close()
                    return
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._closing = True
        self.listener.close()
