"""A private Redis Cluster for the test suite: three primaries (and optionally one
replica each) on free loopback ports, made with ``redis-cli --cluster create``.

Like :mod:`tests.redis_server`, a cluster that cannot be made fails the run; it never
skips. Each node is a :class:`~tests.redis_server.RedisServer`, so the chaos helpers
(``kill``, ``restart``, ``freeze``) work per node.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from tests.redis_server import RedisServer, free_port

NODE_TIMEOUT_MS = 1000
"""How long a primary may be silent before its replica takes over: short, so a failover
test waits about a second and a half, not the 15 s Redis defaults to."""


class RedisClusterNodes:
    """``primaries`` primaries with ``replicas`` replicas each, all slots assigned."""

    def __init__(
        self, workdir: Path, *, primaries: int = 3, replicas: int = 0, aof: bool = True
    ) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli not found on PATH: run `make setup`")
        self.nodes: list[RedisServer] = []
        try:
            for i in range(primaries * (1 + replicas)):
                self.nodes.append(
                    RedisServer(
                        workdir / f"node{i}",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(workdir / f"node{i}" / "nodes.conf"),
                        "--cluster-node-timeout",
                        str(NODE_TIMEOUT_MS),
                        "--cluster-port",
                        str(free_port()),
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "always",
                        # a replica's first sync starts at once, not after Redis's 5 s
                        "--repl-diskless-sync-delay",
                        "0",
                    )
                )
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            made = subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas),
                 "--cluster-yes"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            if made.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {made.stdout}{made.stderr}")
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        self.port = self.nodes[0].port
        self.url = f"redis+cluster://127.0.0.1:{self.port}/0"
        """Any node's URL names the whole cluster; the scheme turns cluster mode on."""

    def _wait_ok(self, timeout_s: float = 30) -> None:
        """Until every live node says ``cluster_state:ok`` and every replica has synced."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = []
            for node in self.nodes:
                if node.proc.poll() is not None:
                    continue
                with redis.Redis(port=node.port) as c:
                    info = c.execute_command("CLUSTER INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    states.append("cluster_state:ok" in text or "'cluster_state': 'ok'" in text)
                    repl = c.info("replication")  # a replica that never synced cannot fail over
                    states.append(repl["role"] != "slave" or repl["master_link_status"] == "up")
            if all(states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def client(self) -> RedisCluster:
        return RedisCluster(host="127.0.0.1", port=self.port)

    def primaries(self) -> list[RedisServer]:
        """The nodes that serve slots now (after a failover, a promoted replica)."""
        found = []
        for node in self.nodes:
            if node.proc.poll() is not None:
                continue
            with redis.Redis(port=node.port) as c:
                if c.info("replication")["role"] == "master":
                    found.append(node)
        return found

    def move_slot(self, slot: int, to_port: int) -> int:
        """Move ``slot`` with its keys to the primary on ``to_port`` (the steps
        ``redis-cli --cluster reshard`` takes: SETSLOT IMPORTING/MIGRATING, MIGRATE in
        batches, SETSLOT NODE everywhere); returns the number of keys moved."""
        return self.finish_move(slot, self.begin_move(slot, to_port))

    def begin_move(self, slot: int, to_port: int) -> tuple[int, int]:
        """The first step of :meth:`move_slot`: the slot is IMPORTING on the target and
        MIGRATING on its owner, every key still on the owner. Returns (from, to) ports."""
        owner_port = self._slot_owner(slot)
        with redis.Redis(port=owner_port) as src, redis.Redis(port=to_port) as dst:
            src_id = src.execute_command("CLUSTER MYID").decode()
            dst_id = dst.execute_command("CLUSTER MYID").decode()
            dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        return owner_port, to_port

    def migrate_keys(self, ports: tuple[int, int], *names: bytes | str) -> None:
        """MIGRATE ``names`` from the owner to the target of a move begun."""
        with redis.Redis(port=ports[0]) as src:
            src.execute_command("MIGRATE", "127.0.0.1", ports[1], "", 0, 5000, "KEYS", *names)

    def finish_move(self, slot: int, ports: tuple[int, int]) -> int:
        """The rest of :meth:`move_slot`: the keys in batches of 50, then SETSLOT NODE."""
        moved = 0
        with redis.Redis(port=ports[0]) as src, redis.Redis(port=ports[1]) as dst:
            dst_id = dst.execute_command("CLUSTER MYID").decode()
            while True:
                names = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 50)
                if not names:
                    break
                self.migrate_keys(ports, *names)
                moved += len(names)
        for node in self.primaries():
            with redis.Redis(port=node.port) as c:
                c.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        return moved

    def _slot_owner(self, slot: int) -> int:
        with redis.Redis(port=self.port) as c:
            for start, end, *nodes in c.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(nodes[0][1])
        raise RuntimeError(f"slot {slot} has no owner")

    def flush(self) -> None:
        """Data and functions off every primary (a clean deployment per test)."""
        for node in self.primaries():
            with redis.Redis(port=node.port) as c:
                c.flushall()
                c.function_flush()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
