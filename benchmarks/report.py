"""The Markdown report of an end-to-end benchmark run (benchmarks/e2e.py), targets included."""

from __future__ import annotations

from typing import Any

CONCURRENCY = (1, 16, 64)


def _cell(summary: dict[str, Any], key: str) -> dict[str, Any]:
    return summary.get(key, {})


def _lat(row: dict[str, Any]) -> str:
    return f"{row['p50_ms']:.1f} / {row['p99_ms']:.1f}" if row else "-"


def _rate(row: dict[str, Any]) -> str:
    return f"{row['throughput_per_s']:,.0f}" if row else "-"


def engine_numbers(engine: dict[str, Any]) -> dict[str, float]:
    """The engine figures the targets name: lone request, and 64 concurrent callers."""
    inline = engine["batcher"]["inline"]
    at64 = next(level for level in inline["concurrent"] if level["callers"] == 64)
    return {
        "lone_p50_us": engine["engine"]["p50_us"],
        "lone_p99_us": engine["engine"]["p99_us"],
        "c64_engine_per_item_us": at64["engine_per_item_us"],
        "c64_wall_per_item_us": at64["per_item_us"],
        "c64_caller_per_item_us": at64["caller_cost_per_item_us"],
    }


def markdown(result: dict[str, Any], prefix: str) -> str:
    s = result["summary"]
    r = result["ratios"]
    m = result["machine"]
    v = result["versions"]
    b = result["budget"]
    lines = [
        f"Run {m['date']} on {m['cpu']} ({m['nproc']} CPUs, shared with other work: noisy), "
        f"commit {str(m['git_commit'])[:10]}{' (dirty)' if m['git_dirty'] else ''}; "
        f"Python {m['python']}, onnxruntime {v['onnxruntime']}, torch {v['torch']}, "
        f"Flask {v['flask']}, {v['wrk']}. MariaDB on 127.0.0.1, service "
        f"`hollang serve --workers 2`; {b['rounds']} interleaved rounds of {b['seconds']:.0f} s "
        "per cell; medians over rounds, ratios taken round by round. Latency p50 / p99 in ms.",
        "",
        "**(1) POST /test-responses, embedded vs remote (the original design: the same service "
        "calling the Flask/PyTorch stand-in over HTTP)**",
        "",
        "| concurrency | embedded req/s | remote req/s | throughput ratio | embedded p50 / p99 "
        "| remote p50 / p99 | p99 ratio | CPU ms per request, embedded / remote (service + "
        "stand-in) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in CONCURRENCY:
        e = _cell(s, f"test-responses/embedded/c{c}")
        o = _cell(s, f"test-responses/remote/c{c}")
        k = r[f"c{c}"]
        lines.append(
            f"| {c} | {_rate(e)} | {_rate(o)} | {k['embedded_vs_remote_throughput']:.2f}x "
            f"| {_lat(e)} | {_lat(o)} | {k['embedded_vs_remote_p99']:.2f}x "
            f"| {e.get('cpu_ms_per_request', 0):.2f} / {o.get('cpu_ms_per_request', 0):.2f} |"
        )
    lines += [
        "",
        "**(2) POST /test-responses, batching on (max batch 64) vs off (max batch 1)**",
        "",
        "| concurrency | on req/s | off req/s | throughput ratio | on p50 / p99 | off p50 / p99 "
        "| p99 ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in CONCURRENCY:
        e = _cell(s, f"test-responses/embedded/c{c}")
        o = _cell(s, f"test-responses/nobatch/c{c}")
        k = r[f"c{c}"]
        lines.append(
            f"| {c} | {_rate(e)} | {_rate(o)} | {k['batching_on_vs_off_throughput']:.2f}x "
            f"| {_lat(e)} | {_lat(o)} | {k['batching_on_vs_off_p99']:.2f}x |"
        )
    lines += [
        "",
        "**(3) The serving path alone: POST /predict (no database), ours against the same job "
        "written three other ways on the same model file, 2 workers each (benchmarks/"
        "baselines), and the stand-in of the original inference server called directly**",
        "",
        "| concurrency | ours req/s | Flask + gunicorn | bare FastAPI | raw ASGI | stand-in "
        "| ours / Flask | ours / FastAPI | ours / raw | ours p50 / p99 | Flask p50 / p99 "
        "| FastAPI p50 / p99 | raw p50 / p99 | p99 ours / Flask |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in CONCURRENCY:
        e = _cell(s, f"predict/embedded/c{c}")
        fl, fa, raw = (_cell(s, f"predict/{v}/c{c}") for v in ("flask", "fastapi", "raw"))
        st = _cell(s, f"predict/standin/c{c}")
        k = r[f"c{c}"]
        lines.append(
            f"| {c} | {_rate(e)} | {_rate(fl)} | {_rate(fa)} | {_rate(raw)} | {_rate(st)} "
            f"| {k['predict_embedded_vs_flask_throughput']:.2f}x "
            f"| {k['predict_embedded_vs_fastapi_throughput']:.2f}x "
            f"| {k['predict_embedded_vs_raw_throughput']:.2f}x "
            f"| {_lat(e)} | {_lat(fl)} | {_lat(fa)} | {_lat(raw)} "
            f"| {k['predict_embedded_vs_flask_p99']:.2f}x |"
        )
    lines += [
        "",
        "CPU ms per /predict (server processes only), ours / Flask / FastAPI / raw: "
        + ", ".join(
            f"c={c}: "
            + " / ".join(
                f"{_cell(s, f'predict/{v}/c{c}').get('cpu_ms_per_request', 0):.3f}"
                for v in ("embedded", "flask", "fastapi", "raw")
            )
            for c in CONCURRENCY
        )
        + ".",
    ]
    tests = _cell(s, "tests/embedded/c64")
    rec = _cell(s, "recommendation/embedded/c64")
    reads = r.get("reads", {})
    lines += [
        "",
        "**(4) Reads (embedded, concurrency 64), against our /predict and the raw ASGI ceiling "
        "in the same run**",
        "",
        "| request | req/s | p50 / p99 | vs our /predict | vs raw ASGI /predict |",
        "|---|---:|---:|---:|---:|",
        f"| GET /tests?version=1 | {_rate(tests)} | {_lat(tests)} "
        f"| {reads.get('tests_vs_predict_embedded_throughput', 0):.2f}x "
        f"| {reads.get('tests_vs_predict_raw_throughput', 0):.2f}x |",
        f"| GET /recommendations/{{id}} | {_rate(rec)} | {_lat(rec)} "
        f"| {reads.get('recommendation_vs_predict_embedded_throughput', 0):.2f}x "
        f"| {reads.get('recommendation_vs_predict_raw_throughput', 0):.2f}x |",
    ]
    en = engine_numbers(result["engine"])
    lines += [
        "",
        "**(5) Engine (benchmarks/engine.py, bundled model, servers stopped)**",
        "",
        f"A lone request spends p50 {en['lone_p50_us']:.0f} µs / p99 {en['lone_p99_us']:.0f} µs "
        f"in `ModelEngine.predict`. 64 concurrent callers: {en['c64_wall_per_item_us']:.2f} µs "
        f"wall per item, of which the callers' own coroutines cost "
        f"{en['c64_caller_per_item_us']:.2f} µs (null engine) and the engine "
        f"{en['c64_engine_per_item_us']:.2f} µs.",
    ]
    shadow = result.get("shadow")
    if shadow and _cell(s, "predict/shadow/c1"):
        lines += [
            "",
            "**(6) POST /predict with a shadow model scoring every request (`hollang model "
            "shadow`: the same network under another version) vs without, in the same rounds**",
            "",
            "| concurrency | without req/s | with req/s | throughput ratio | without p50 / p99 "
            "| with p50 / p99 | p50 ratio | p99 ratio | CPU ms per request, without / with |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c in CONCURRENCY:
            e, w = _cell(s, f"predict/embedded/c{c}"), _cell(s, f"predict/shadow/c{c}")
            k = r[f"c{c}"]
            lines.append(
                f"| {c} | {_rate(e)} | {_rate(w)} "
                f"| {k['predict_shadow_vs_embedded_throughput_per_s']:.2f}x "
                f"| {_lat(e)} | {_lat(w)} | {k['predict_shadow_vs_embedded_p50_ms']:.2f}x "
                f"| {k['predict_shadow_vs_embedded_p99_ms']:.2f}x "
                f"| {e.get('cpu_ms_per_request', 0):.3f} / {w.get('cpu_ms_per_request', 0):.3f} |"
            )
        lines += [
            "",
            f"The shadow scored {shadow['rows_scored']:,.0f} rows while its service answered "
            f"{shadow['requests_served']:,} measured requests (the warm-up adds a few; a slow "
            "shadow skips batches rather than queue them).",
        ]
    c16, c64 = r["c16"], r["c64"]
    sub1 = _cell(s, "test-responses/embedded/c1")
    sub64 = _cell(s, "test-responses/embedded/c64")
    scaling = (
        sub64["throughput_per_s"] / sub1["throughput_per_s"] if sub1 and sub64 else float("nan")
    )
    targets = [
        (
            "(11) /predict at c=64 >= 2x Flask + gunicorn",
            c64["predict_embedded_vs_flask_throughput"] >= 2,
            f"{c64['predict_embedded_vs_flask_throughput']:.2f}x",
        ),
        (
            "(11) /predict at c=64 >= 0.8x bare FastAPI",
            c64["predict_embedded_vs_fastapi_throughput"] >= 0.8,
            f"{c64['predict_embedded_vs_fastapi_throughput']:.2f}x",
        ),
        (
            "(11) /predict p99 at c=16 <= 1.5x Flask + gunicorn",
            c16["predict_embedded_vs_flask_p99"] <= 1.5,
            f"{c16['predict_embedded_vs_flask_p99']:.2f}x",
        ),
        (
            "(11) /predict at c=64 vs raw ASGI (the limit to aim at; no target)",
            True,
            f"{c64['predict_embedded_vs_raw_throughput']:.2f}x",
        ),
        (
            "(11) GET /recommendations/{id} at c=64 >= 0.3x our /predict",
            reads.get("recommendation_vs_predict_embedded_throughput", 0) >= 0.3,
            f"{reads.get('recommendation_vs_predict_embedded_throughput', 0):.2f}x",
        ),
        (
            "(12) service CPU per submission at c=1 <= 1.5 ms",
            bool(sub1) and sub1["cpu_ms_per_request"] <= 1.5,
            f"{sub1.get('cpu_ms_per_request', 0):.2f} ms",
        ),
        (
            "(12) POST /test-responses: 64 clients >= 3x one client",
            scaling >= 3,
            f"{scaling:.2f}x",
        ),
        (
            "(12) embedded throughput at c=64 >= 3x remote",
            c64["embedded_vs_remote_throughput"] >= 3,
            f"{c64['embedded_vs_remote_throughput']:.2f}x",
        ),
        (
            "(12) embedded p99 at c=64 <= 0.3x remote",
            c64["embedded_vs_remote_p99"] <= 0.3,
            f"{c64['embedded_vs_remote_p99']:.2f}x",
        ),
        (
            "(5) engine per-item cost at 64 callers < 1 µs",
            en["c64_engine_per_item_us"] < 1 and not result["quick"],
            f"{en['c64_engine_per_item_us']:.2f} µs"
            + (" (a quick run is too short to judge)" if result["quick"] else ""),
        ),
        (
            "(5) a lone request < 50 µs in the engine",
            en["lone_p50_us"] < 50,
            f"p50 {en['lone_p50_us']:.0f} µs",
        ),
        (
            "(5) GET /tests >= 4,000 req/s",
            bool(tests) and tests["throughput_per_s"] >= 4000,
            f"{tests.get('throughput_per_s', 0):,.0f} req/s",
        ),
    ]
    wrk_share = max((row["wrk_cpu_share"] for row in s.values()), default=0)
    errors = sum(row["errors"] for row in s.values())
    lines += [
        "",
        "**Targets**",
        "",
        "| target | measured | |",
        "|---|---:|---|",
        *[f"| {name} | {value} | {'met' if ok else 'MISSED'} |" for name, ok, value in targets],
        "",
        f"Load generator: wrk, one thread; its CPU use peaked at {wrk_share:.0%} of one core "
        f"(of 2), so it is not what limits these numbers. Failed or non-2xx responses over the "
        f"whole run: {errors}.",
        "",
        f"![latency distributions]({prefix}-latency.png)",
        f"![throughput vs concurrency]({prefix}-throughput.png)",
        f"![embedded vs remote]({prefix}-embedded-vs-remote.png)",
    ]
    return "\n".join(lines)
