"""The reader's public face: every read has a real signature and a docstring naming its
parameters on both readers; the blocking reader runs on its own client (no thread, no
loop), its read cache included; results are typed and still read as dicts."""

from __future__ import annotations

import dataclasses
import inspect
import json
import threading
from typing import Any

import pytest
import redis

from memstream.producers import EpisodeSaved, Producer, StepRecorded
from memstream.projections import AsyncReader, Episode, Page, Reader, Result, Step
from tests.workers_util import spawn_worker, stop_worker, wait_until

ALLOWED_KWARGS = {"from_url"}
"""``from_url(url, **options)`` forwards documented Settings fields; nothing else may
take a catch-all."""


def public_methods(cls: type) -> dict[str, Any]:
    found = {}
    for name, value in inspect.getmembers(cls):
        if name.startswith("_") or isinstance(inspect.getattr_static(cls, name), property):
            continue
        if callable(value):
            found[name] = value
    return found


@pytest.mark.parametrize("cls", [Reader, AsyncReader])
def test_every_public_method_has_a_real_signature_and_names_its_parameters(cls: type) -> None:
    methods = public_methods(cls)
    assert len(methods) > 40, sorted(methods)  # the walk found the reads, not nothing
    problems = []
    for name, method in methods.items():
        signature = inspect.signature(method)
        kinds = {p.kind for p in signature.parameters.values()}
        if inspect.Parameter.VAR_POSITIONAL in kinds:
            problems.append(f"{name}: takes *args")
        if inspect.Parameter.VAR_KEYWORD in kinds and name not in ALLOWED_KWARGS:
            problems.append(f"{name}: takes **kwargs")
        doc = inspect.getdoc(method) or ""
        if not doc:
            problems.append(f"{name}: no docstring")
        for param in signature.parameters:
            if param not in ("self", "cls") and param not in doc:
                problems.append(f"{name}: docstring does not name {param!r}")
        if signature.return_annotation is inspect.Signature.empty:
            problems.append(f"{name}: no return annotation")
    assert problems == []


def test_both_readers_offer_the_same_reads_with_the_same_parameters() -> None:
    blocking, asynchronous = public_methods(Reader), public_methods(AsyncReader)
    only_async = {"aclose"}
    only_blocking = {"close"}
    assert set(blocking) - only_blocking == set(asynchronous) - only_async
    for name in set(blocking) - only_blocking:
        sync_params = list(inspect.signature(blocking[name]).parameters)
        async_params = list(inspect.signature(asynchronous[name]).parameters)
        if name in ("from_settings", "from_url"):
            continue  # the async reader may also take its client; same keywords checked above
        assert sync_params == async_params, name
        assert inspect.iscoroutinefunction(asynchronous[name]) or name in (
            "subscribe", "cache_stats", "from_settings", "from_url"
        ), name  # fmt: skip


def test_results_read_as_the_dicts_they_were() -> None:
    step = Step.of({"log_id": "1-0", "action": "open", "observation": "", "reasoning": "",
                    "success": True, "session": None, "ts": 5})  # fmt: skip
    as_dict = {"log_id": "1-0", "action": "open", "observation": "", "reasoning": "",
               "success": True, "session": None, "ts": 5}  # fmt: skip
    assert step == as_dict and as_dict == step
    assert step["action"] == step.action == "open" and step.get("nope") is None
    assert list(step.keys()) == list(as_dict) and dict(step.items()) == as_dict
    assert {**step} == as_dict and "ts" in step and "nope" not in step
    assert step != {**as_dict, "ts": 6}
    with pytest.raises(KeyError):
        step["nope"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.ts = 6
    page = Page([Episode.of({"log_id": "1-0", "episode_id": "e1", "task": "t"})], None)
    plain = page.to_dict()
    assert type(plain) is dict and type(plain["items"][0]) is dict
    assert json.loads(json.dumps(plain)) == page
    assert page["items"][0]["task"] == page.entries[0].task == "t"
    # A key the reader does not know (a newer writer's field) is dropped, not an error.
    assert Step.of({**as_dict, "added_later": 1}) == as_dict
    assert isinstance(step, Result) and not isinstance(step, dict)


def test_the_blocking_reader_runs_its_reads_without_a_thread(deployed: str) -> None:
    worker = spawn_worker(deployed, "wapi")
    try:
        with Producer.from_url(deployed) as producer:
            producer.append("api", EpisodeSaved(episode_id="e1", task="deploy the api"))
            receipt = producer.append("api", StepRecorded(action="ran the deploy"), session="s")
        with Reader.from_url(deployed) as reader:
            # wait() runs on the private loop that holds the change subscriber (projections/
            # bridge.py); every read after it runs in this thread, and starts none.
            assert reader.wait(receipt, timeout=20).applied
            before = set(threading.enumerate())
            assert reader.episode("api", "e1")["task"] == "deploy the api"
            assert reader.episodes("api").entries[0].episode_id == "e1"
            assert [s.action for s in reader.working("api")] == ["ran the deploy"]
            assert reader.context("api", "deploy").episodes[0].episode_id == "e1"
            assert [e.type for e in reader.log("api")] == ["episode.saved", "step.recorded"]
            assert reader.world_config("api", "none") is None
            assert reader.tensors("api") == []
            assert set(threading.enumerate()) == before  # no private loop, no helper thread
    finally:
        assert stop_worker(worker) == 0


def test_a_blocking_cached_reader_is_invalidated_by_notifications(
    deployed: str, r: redis.Redis
) -> None:
    worker = spawn_worker(deployed, "wcache")
    try:
        with Producer.from_url(deployed) as producer, Reader.from_url(deployed, cache=True) as rd:
            assert rd.wait(producer.save_state("alice", {"v": 1}), timeout=20).applied

            def hit() -> bool:
                hits = rd.cache_stats()["hits"]
                return rd.state("alice") == {"v": 1} and rd.cache_stats()["hits"] > hits

            wait_until(hit, 5, "the listener thread to subscribe and the cache to serve a hit")
            calls = r.info("commandstats").get("cmdstat_hget", {}).get("calls", 0)
            for _ in range(10):
                assert rd.state("alice") == {"v": 1}
            assert r.info("commandstats").get("cmdstat_hget", {}).get("calls", 0) == calls

            producer.save_state("alice", {"v": 2})  # no wait(): only a notification invalidates
            wait_until(lambda: rd.state("alice") == {"v": 2}, 10, "the notification")
            assert rd.cache_stats()["invalidations"] >= 1
            # Read-your-writes through wait(), cached again right after.
            assert rd.wait(producer.save_state("alice", {"v": 3}), timeout=20).applied
            assert rd.state("alice") == {"v": 3} and rd.state("alice") == {"v": 3}
    finally:
        assert stop_worker(worker) == 0
