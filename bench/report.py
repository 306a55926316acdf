"""Turn the sections' results into one record, Markdown tables, and result files.

Every ratio is "times slower than its baseline" (1.0 = as fast as the baseline, higher is
worse): build time over the unavoidable work, baseline throughput over the service's, one
concurrent wave over one request, the framework floor's request rate over the route's.
:func:`ratios` collects them all, so the slowest one can be named.

:func:`markdown` renders the record as GitHub Markdown tables, which read fine in a terminal
too; :func:`write` stores ``latest.json`` (everything, including each run and baseline step)
and ``latest.md`` (the tables) in the results directory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["markdown", "ratios", "write"]


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [[_cell(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return lines


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if value < 10 else f"{value:.0f}"
    return str(value).replace("|", "/")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} %"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def ratios(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ratio of the run, slowest first."""
    out = []
    for row in result.get("cold_builds", []):
        if row["ratio"] is not None:
            out.append(
                {
                    "name": f"cold build {row['kind']} / unavoidable work",
                    "ratio": row["ratio"],
                    "detail": f"{row['median_seconds']} s vs {row['baseline_seconds']} s "
                    f"({row['baseline_note']})",
                }
            )
    dl = result.get("downloads")
    if dl:
        for name, value in dl["ratios"].items():
            out.append({"name": f"download {dl['asset']}: {name}", "ratio": value, "detail": ""})
    dd = result.get("dedup")
    if dd:
        out.append(
            {
                "name": f"dedup: {dd['clients']} identical cold requests / one",
                "ratio": dd["ratio"],
                "detail": f"{dd['builds_performed']:g} build(s) performed",
            }
        )
    api = {r["name"]: r for r in result.get("flavor_api", [])}
    floor = api.get("GET /healthz")
    for name, r in api.items():
        if floor is not None and r is not floor and r["rps"]:
            out.append(
                {
                    "name": f"{name}: /healthz req/s over its req/s",
                    "ratio": round(floor["rps"] / r["rps"], 2),
                    "detail": f"{r['rps']} vs {floor['rps']} req/s",
                }
            )
    return sorted(out, key=lambda r: r["ratio"], reverse=True)


def _machine(m: dict[str, Any]) -> list[str]:
    tools = ", ".join(f"{k}: {v}" for k, v in m["tools"].items())
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_mib']} MiB RAM, "
        f"kernel {m['kernel']}, {m['os']}, Python {m['python']}, revision {m['revision']}.",
        "",
        f"Python packages: {packages}.",
        "",
        f"Tools: {tools}.",
    ]


def _builds(rows: list[dict[str, Any]]) -> list[str]:
    body = []
    for r in rows:
        if r["status"] != "ok":
            body.append([r["kind"], r["status"], None, None, None, None, None, None, None])
            continue
        cold = "" if r["cold"] else " (NOT cold)"
        body.append(
            [
                r["kind"] + cold,
                f"{r['median_seconds']:.3f} (n={len(r['runs'])})",
                f"{r['median_service_build_seconds']:.3f}",
                f"{r['peak_rss_service_mib']:.0f} / {r['peak_rss_tree_mib']:.0f}",
                f"{r['bytes'] / 2**20:.1f}",
                None if r["baseline_seconds"] is None else f"{r['baseline_seconds']:.3f}",
                _x(r["ratio"]),
                r["baseline_note"],
                "; ".join(f"{p['name']} {p['seconds']:.3f}" for p in r["baseline"]),
            ]
        )
    return _table(
        [
            "asset",
            "request s (median)",
            "of which building s",
            "peak RSS MiB service / +children",
            "MiB",
            "unavoidable s",
            "ratio",
            "baseline",
            "baseline steps (s)",
        ],
        body,
    )


def _downloads(dl: dict[str, Any]) -> list[str]:
    size_note = (
        ""
        if dl["at_least_256_mib"]
        else " — SMALLER THAN 256 MiB: no asset that big is built yet, so each client "
        "downloads it repeatedly until it has 256 MiB"
    )
    lines = [
        f"Asset: `{dl['asset']}`, {dl['asset_mib']} MiB{size_note}; its cold build (before "
        f"the measurements) took {dl['asset_build_seconds']} s."
    ]
    if dl["not_available"]:
        lines.append(f"Not available: {', '.join(dl['not_available'])}.")
    lines.append("")
    service = {
        m["clients"]: m["mib_per_s"] for m in dl["measurements"] if m["source"] == "image-service"
    }
    body = [
        [
            m["source"],
            m["clients"],
            m["mib_per_s"],
            m["requests"],
            m.get("first_byte_ms"),
            _pct(m.get("server_cpu_pct")),
            _pct(m["client_cpu_pct"]),
            m.get("server_peak_rss_mib"),
            _x(m["mib_per_s"] / service[m["clients"]]) if service.get(m["clients"]) else None,
        ]
        for m in dl["measurements"]
    ]
    headers = ["source", "clients", "MiB/s", "requests", "first byte ms (median)", "server CPU",
               "client CPU", "service RSS MiB", "times faster than the service"]  # fmt: skip
    return lines + _table(headers, body)


def _dedup(dd: dict[str, Any]) -> list[str]:
    columns = [
        ("asset", dd["path"]),
        ("requests", dd["clients"]),
        ("builds performed", dd["builds_performed"]),
        ("joined it", dd["requests_joined"]),
        ("from the cache", dd["requests_from_cache"]),
        ("one cold request s", dd["single_build_seconds"]),
        ("the build (under load) s", dd["service_build_seconds"]),
        ("first answer's headers s", dd["first_answer_headers_seconds"]),
        ("all answered s", dd["all_answered_seconds"]),
        ("ratio", _x(dd["ratio"])),
        ("statuses", ", ".join(f"{k}: {v}" for k, v in dd["statuses"].items())),
    ]
    return _table([c[0] for c in columns], [[c[1] for c in columns]])


def _api(results: list[dict[str, Any]]) -> list[str]:
    floor = next((r for r in results if r["name"] == "GET /healthz"), None)
    body = [
        [
            r["name"],
            r["client"],
            r["concurrency"],
            r["requests"],
            r["rps"],
            r["p50_ms"],
            r["p99_ms"],
            r["errors"],
            _pct(r.get("server_cpu_pct")),
            _pct(r["client_cpu_pct"]),
            _x(floor["rps"] / r["rps"]) if floor and r["rps"] else None,
        ]
        for r in results
    ]
    return _table(
        ["route", "client", "concurrency", "requests", "req/s", "p50 ms", "p99 ms", "errors",
         "server CPU", "client CPU", "/healthz req/s ÷ req/s"],
        body,
    )  # fmt: skip


def _memory(samplers: list[dict[str, Any]]) -> list[str]:
    body = [
        [
            s["label"],
            s["vm_hwm_mib"],
            s["sampled_peak_mib"],
            s["tree_peak_mib"],
            s["samples"],
            ", ".join(f"{k} {v:.0f}" for k, v in s["by_command_mib"].items() if k != s["label"]),
        ]
        for s in samplers
    ]
    return _table(
        ["service process", "VmHWM MiB", "sampled peak MiB", "tree peak MiB", "samples",
         "children's peaks (MiB)"],
        body,
    )  # fmt: skip


def _section_memory(sections: dict[str, dict[str, Any]]) -> list[str]:
    body = [
        [name, s["seconds"], s["root_peak_mib"], s["tree_peak_mib"]] for name, s in sections.items()
    ]
    return _table(["section", "s", "main service peak MiB", "+ children MiB"], body)


def markdown(result: dict[str, Any]) -> str:
    version = f"Talos {result['talos_version']}, {result['arch']}"
    sections: list[tuple[str, str, Callable[[Any], list[str]]]] = [
        ("cold_builds", f"1. Cold builds ({version})", _builds),
        ("downloads", "2. Cache-hit downloads", _downloads),
        ("dedup", "3. Dedup under load", _dedup),
        ("flavor_api", "4. Flavor API", _api),
        ("memory", "5. Memory (whole run)", _memory),
        ("section_memory", "Memory of the main service by section", _section_memory),
    ]
    lines = [
        "# image-service benchmark",
        "",
        f"Run {result['started']}, {result['duration_s']:.0f} s; load average "
        f"{result['load_average']['start']} at the start, {result['load_average']['end']} at the "
        "end (anything else running on the machine shows here).",
        "",
        "Setup (s): " + ", ".join(f"{k} {v}" for k, v in result["setup_seconds"].items()) + ".",
        "",
        *_machine(result["machine"]),
        "",
    ]
    for key, title, render in sections:
        if key in result:
            lines += [f"## {title}", "", *render(result[key]), ""]
    for key, error in result.get("errors", {}).items():
        lines += [f"**{key} failed:** {error}", ""]
    lines += ["## Ratios, slowest first", ""]
    lines += _table(
        ["ratio", "what", "detail"],
        [[_x(r["ratio"]), r["name"], r["detail"]] for r in result["ratios"]],
    )
    if result["ratios"]:
        slowest = result["ratios"][0]
        lines += ["", f"Slowest: **{slowest['name']}** at {_x(slowest['ratio'])}."]
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    as_json = directory / "latest.json"
    as_md = directory / "latest.md"
    as_json.write_text(json.dumps(result, indent=2) + "\n")
    as_md.write_text(markdown(result))
    return as_json, as_md
