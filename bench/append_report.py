"""The append benchmark's report: medians of the rounds, verdicts, table and JSON."""

from __future__ import annotations

import argparse

from bench.common import Report, Target, environment, fmt_rate, fmt_us, median, ratio

CHUNK = 1000
"""Raw pipeline chunk: the producer's PIPELINE_CHUNK, so both send the same batches."""

THROUGHPUT_TARGET = 0.5
ADDED_US_TARGET = 50.0
CLIENT_US_TARGET = 10.0


def summarise(
    args: argparse.Namespace,
    version: str,
    payload_bytes: float,
    rates: dict[str, list[float]],
    plan_s: list[float],
    lat: dict[str, list[dict[str, float]]],
    server_cost: dict[str, float],
    rb: dict[str, float],
) -> tuple[Report, list[Target]]:
    raw_rate = median(rates["raw"])
    ms_rate = median(rates["memstream"])
    send_rate = median(rates["send_only"])
    plan_us = median(plan_s)
    p = {
        name: {q: median([r[q] for r in rounds]) for q in ("p50", "p99")}
        for name, rounds in lat.items()
    }
    targets = [
        Target(
            "append_many / raw XADD throughput", ratio(ms_rate, raw_rate), THROUGHPUT_TARGET, True
        ),
        Target(
            "append p50 minus raw XADD p50 (us)",
            (p["append"]["p50"] - p["raw"]["p50"]) * 1e6,
            ADDED_US_TARGET,
            False,
        ),
        Target("client work per message event (us)", plan_us * 1e6, CLIENT_US_TARGET, False),
    ]

    rep = Report(
        f"memstream append vs raw XADD: median of {args.rounds} interleaved rounds",
        ("measure", "raw XADD", "memstream", "ratio", "target"),
    )
    rep.row(
        "throughput, pipelined",
        fmt_rate(raw_rate),
        fmt_rate(ms_rate),
        f"{targets[0].value:.3f}",
        f"{targets[0].rule} {targets[0].verdict}",
    )
    rep.row(
        "  of which: send only",
        fmt_rate(raw_rate),
        fmt_rate(send_rate),
        f"{ratio(send_rate, raw_rate):.3f}",
        "",
    )
    rep.row(
        "  of which: client work per event",
        "",
        fmt_us(plan_us),
        "",
        f"{targets[2].rule} {targets[2].verdict}",
    )
    for q, target in (("p50", targets[1]), ("p99", None)):
        rep.row(
            f"latency {q}, one append",
            fmt_us(p["raw"][q]),
            fmt_us(p["append"][q]),
            f"{ratio(p['append'][q], p['raw'][q]):.3f}",
            f"added {target.rule} {target.verdict}" if target else "",
        )
        rep.row(
            f"  of which: send only, {q}",
            fmt_us(p["raw"][q]),
            fmt_us(p["send_only"][q]),
            f"{ratio(p['send_only'][q], p['raw'][q]):.3f}",
            "",
        )
    rep.row(
        "latency p50, append_message",
        fmt_us(p["raw"]["p50"]),
        fmt_us(p["append_message"]["p50"]),
        f"{ratio(p['append_message']['p50'], p['raw']['p50']):.3f}",
        "",
    )
    srv_raw = server_cost["raw_xadd_usec_per_call"]
    for label, key in (
        ("server time per event, ms_append_many", "ms_append_many_usec_per_event"),
        ("server time per call, ms_append", "ms_append_usec_per_call"),
    ):
        rep.row(
            label,
            f"{srv_raw:.2f} us",
            f"{server_cost[key]:.2f} us",
            f"{ratio(server_cost[key], srv_raw):.1f}",
            "",
        )
    rep.notes.append(
        "memstream = Producer.append_many (FCALL ms_append_many) / Producer.append (FCALL "
        "ms_append); 'send only' sends calls planned beforehand; 'client work' is what it "
        "skips: building each MessageAppended, validating, redacting, encoding, keys; "
        f"throughput interleaved by chunks of {CHUNK:,}; "
        f"{args.n:,} events and {args.latency_n:,} calls per round; payload "
        f"{payload_bytes:.0f} bytes msgpack; server time from INFO commandstats."
    )
    added = p["append"]["p50"] - p["raw"]["p50"]
    added_send = p["send_only"]["p50"] - p["raw"]["p50"]
    rep.notes.append(
        f"one append adds {fmt_us(added)} over raw XADD at p50: {fmt_us(added_send)} on the "
        f"wire and server, {fmt_us(added - added_send)} in prepare(), receipt ({args.pinning})."
    )
    for name, rps in rb.items():
        rep.notes.append(f"context: redis-benchmark {name}: {fmt_rate(rps)} (C client)")

    rep.data = {
        "environment": environment(version),
        "parameters": {
            "n": args.n,
            "latency_n": args.latency_n,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "pipeline_chunk": CHUNK,
            "payload_bytes": payload_bytes,
            "pin": args.pin,
            "pinning": args.pinning,
        },
        "throughput_events_per_s": {
            "raw_xadd": raw_rate,
            "append_many": ms_rate,
            "append_many_send_only": send_rate,
            "rounds": rates,
        },
        "plan_seconds_per_event": {"median": plan_us, "rounds": plan_s},
        "latency_seconds": {"median": p, "rounds": lat},
        "ratios": {
            "append_many_over_raw": targets[0].value,
            "append_p50_over_raw_p50": ratio(p["append"]["p50"], p["raw"]["p50"]),
            "append_p50_added_us": targets[1].value,
            "client_us_per_event": targets[2].value,
            "append_p99_over_raw_p99": ratio(p["append"]["p99"], p["raw"]["p99"]),
            "send_only_over_raw_throughput": ratio(send_rate, raw_rate),
            "send_only_p50_over_raw_p50": ratio(p["send_only"]["p50"], p["raw"]["p50"]),
            "append_message_p50_over_raw_p50": ratio(p["append_message"]["p50"], p["raw"]["p50"]),
        },
        "latency_added_p50_seconds": {"append": added, "send_only": added_send},
        "server_usec_per_call": server_cost,
        "redis_benchmark_rps": rb,
    }
    return rep, targets
