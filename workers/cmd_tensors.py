"""``memstream tensors train|list|stats``: the state-tensor models (docs/tensors.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from rich.console import Console

    from memstream.producers import Producer
    from memstream.projections.reader import Reader


def _latent(text: str | None) -> dict[str, int] | None:
    """``critical=4,other=2`` -> {"critical": 4, "other": 2}."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if not value.isdigit():
            raise argparse.ArgumentTypeError(f"--latent: {part!r} is not GROUP=SIZE")
        out[name.strip()] = int(value)
    return out


def cmd_train(args: argparse.Namespace, client: redis.Redis) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from memstream.producers import Producer, keys
    from memstream.projections.tensors import publish as pub
    from memstream.projections.tensors import train as tr

    from .cli import settings_from

    console = Console(stderr=False)
    if args.epochs < 1:
        print("memstream: --epochs must be at least 1", file=sys.stderr)
        return 2
    kind = keys.check_id(args.kind, "kind")
    owner = keys.check_id(args.owner, "owner") if args.owner else None
    states = list(pub.recorded(client, kind, owner))
    if len(states) < 2:
        print(
            f"memstream: kind {kind} has {len(states)} recorded tensors; need at least 2",
            file=sys.stderr,
        )
        return 1
    vectors, groups, itemsize = pub.matrix(states)
    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(
            f"training {kind} on {len(vectors)} vectors", total=args.epochs * len(groups)
        )
        config, weights, report = tr.train(
            vectors,
            groups,
            kind=kind,
            scope=owner,
            epochs=args.epochs,
            seed=args.seed,
            latent=_latent(args.latent),
            itemsize=itemsize,
            tick=lambda: progress.advance(task),
        )
    took = time.perf_counter() - started
    with Producer.from_settings(settings_from(args)) as producer:
        event, receipt = pub.publish(client, producer, config, weights)
    table = Table(title=f"model {event.version} for {kind} ({took:.1f}s, seed {args.seed})")
    for column in (
        "group",
        "features",
        "latent",
        "hidden",
        "bound",
        "held-out error (p50)",
        "lossless share",
        "ratio",
    ):
        table.add_column(column, justify="left" if column == "group" else "right")
    for g in report:
        table.add_row(
            g.name,
            str(g.features),
            str(g.latent),
            str(g.hidden),
            f"{g.bound:g}",
            f"{g.heldout_error_p50:.4f}",
            f"{g.heldout_fallback:.1%}",
            f"{g.ratio:.2f}x",
        )
    console.print(table)
    console.print(f"published {event.version} (sha256 {event.sha256}) at {receipt.log_id}")
    return 0


def cmd_list(args: argparse.Namespace, client: redis.Redis) -> int:
    from memstream.producers import keys
    from memstream.projections.tensors.registry import ModelRegistry, RedisLoader

    from .cli import settings_from

    versions = RedisLoader(settings_from(args))(ModelRegistry.fixed([])).versions
    problems: Any = client.hgetall(keys.TENSOR_PROBLEMS)
    rows = [
        {
            "version": v.event.version,
            "kind": v.event.kind,
            "scope": v.event.scope,
            "published": f"{v.log_id[0]}-{v.log_id[1]}",
            "groups": {g["name"]: g["latent"] for g in v.event.config["groups"]},
            "problem": v.problem or (problems.get(v.event.version.encode(), b"").decode() or None),
        }
        for v in versions
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = f"  PROBLEM: {row['problem']}" if row["problem"] else ""
        print(
            f"{row['version']}  kind={row['kind']} scope={row['scope'] or '*'} "
            f"at {row['published']} latents={row['groups']}{state}"
        )
    if not rows:
        print("no tensor models published")
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("tensors", parents=[common], help="train and list state-tensor models")
    inner = p.add_subparsers(dest="tensors_command", required=True, metavar="ACTION")
    t = inner.add_parser(
        "train",
        parents=[common],
        help="train a model version from the recorded tensors and publish it",
    )
    t.add_argument("--kind", required=True, help="the tensor kind to train (record_tensor kind)")
    t.add_argument("--owner", default=None, help="train on (and scope the model to) one owner")
    t.add_argument("--epochs", type=int, default=30, help="passes over the training split")
    t.add_argument("--seed", type=int, default=0, help="training is deterministic given it")
    t.add_argument(
        "--latent", default=None, help="latent sizes GROUP=N,... (default: chosen from each bound)"
    )
    t.set_defaults(handler=cmd_train)
    ls = inner.add_parser("list", parents=[common], help="published model versions")
    ls.add_argument("--json", action="store_true", help="print the versions as JSON")
    ls.set_defaults(handler=cmd_list)


def demo_tensors(
    producer: Producer, reader: Reader, console: Console, *, owner: str = "demo-robot",
    n: int = 300, wait_s: float = 30.0,
) -> dict[str, float]:  # fmt: skip
    """The demo's tensor act (``make demo`` calls it while its workers run): record ``n``
    50-feature states in four groups, train a small model from the log in seconds,
    record ``n // 3`` more, read them back decoded, and print the ratio and error.

    ``producer``/``reader``: the demo's sync clients; ``console``: where to print.
    Returns the figures (``ratio``, ``max_error``, ``train_s``)."""
    import numpy as np

    from memstream.projections.tensors import publish as pub
    from memstream.projections.tensors import train as tr

    groups = {"critical": (0, 10, 0.01), "spatial": (10, 20, 0.05),
              "social": (20, 30, 0.05), "other": (30, 50, 0.10)}  # fmt: skip
    rng = np.random.default_rng(0)
    basis, offset = rng.normal(size=(6, 50)), rng.normal(size=50) * 3

    def states(count: int) -> Any:
        z = rng.normal(size=(count, 6))
        return (z @ basis + offset + rng.normal(scale=0.01, size=(count, 50))).astype("f4")

    def record(vectors: Any) -> None:
        last = None
        for i, v in enumerate(vectors):
            last = producer.record_tensor(owner, v, kind="demo", groups=groups, meta={"i": i})
        if last is not None:
            reader.wait(last, timeout=wait_s)

    record(states(n))
    started = time.perf_counter()
    found = [s for s in pub.recorded(producer.client, "demo", owner)]
    vectors, layout, itemsize = pub.matrix(found)
    config, weights, _ = tr.train(vectors, layout, kind="demo", scope=owner, epochs=5, seed=0,
                                  itemsize=itemsize)  # fmt: skip
    event, _ = pub.publish(producer.client, producer, config, weights)
    took = time.perf_counter() - started
    record(states(n // 3))
    read = reader.tensors(owner, "demo", last=n // 3)
    raw = sum(s["raw_bytes"] for s in read)
    stored = sum(s["stored_bytes"] for s in read) or 1
    worst = max((e / s["bounds"][g] for s in read for g, e in s["errors"].items()), default=0.0)
    console.print(
        f"tensors: {n} states of {owner} trained model {event.version} in {took:.1f}s; "
        f"the next {len(read)} are stored at {raw / stored:.1f}x (raw float32 / stored), "
        f"worst group error {worst:.0%} of its bound", highlight=False,
    )  # fmt: skip
    return {"ratio": raw / stored, "max_error": worst, "train_s": took}
