"""A compact Markdown summary of a run, for docs/explanation/performance.md (``run.py --markdown PATH``)."""

from __future__ import annotations

from typing import Any

from .cases import Scenario
from .report import Table, format_ratio
from .targets import Outcome

__all__ = ["render"]

LATENCY_COLUMNS = [
    (Scenario("hit", "sync"), "HIT 300 B dict, sync"),
    (Scenario("hit", "async"), "HIT 300 B dict, async"),
    (Scenario("hit", "sync", shape="model"), "HIT 300 B Pydantic, sync"),
    (Scenario("hit", "async", shape="model"), "HIT 300 B Pydantic, async"),
    (Scenario("hit", "sync", "10KB"), "HIT 10 KB dict, sync"),
    (Scenario("hit", "async", "10KB"), "HIT 10 KB dict, async"),
    (Scenario("miss", "sync"), "MISS 300 B dict, sync"),
    (Scenario("miss", "async"), "MISS 300 B dict, async"),
]
ROLE_ORDER = ["baseline", "reference", "stashly", "peer", "floor"]
THROUGHPUT_COLUMNS = [
    (Scenario("tasks", "async", keys=100), "100 tasks, 100 keys"),
    (Scenario("tasks", "async", keys=1), "100 tasks, one hot key"),
]


def render(tables: list[Table], outcomes: list[Outcome], meta: dict[str, Any]) -> str:
    by_scenario = {table.scenario: table for table in tables}
    parts = [
        f"Measured {meta['when']} on {meta['cpus']} CPUs, Python {meta['python']}, redis-server "
        f"{meta['redis_server']}, redis-py {meta['packages']['redis']} (hiredis {meta['packages']['hiredis']}); "
        f"{meta['rounds']} interleaved rounds of {meta['batch_seconds'] * 1000:.0f} ms per contestant. "
        "Median µs per call and, in brackets, the ratio to the baseline measured next to it in the same rounds"
        " (lower is better).",
        "",
        _grid(by_scenario, LATENCY_COLUMNS, throughput=False),
        "",
        "Concurrency: ops/s of 100 asyncio tasks and, in brackets, the paired ratio to the baseline"
        " (higher is better).",
        "",
        _grid(by_scenario, THROUGHPUT_COLUMNS, throughput=True),
        "",
        "Targets (issue 6):",
        "",
        *[f"- {outcome.text}" for outcome in outcomes],
    ]
    return "\n".join(parts) + "\n"


def _grid(by_scenario: dict[Scenario, Table], columns: list[tuple[Scenario, str]], *, throughput: bool) -> str:
    present = [(scenario, title) for scenario, title in columns if scenario in by_scenario]
    if not present:
        return "(not run)"
    roles: dict[str, int] = {}
    for scenario, _ in present:
        for row in by_scenario[scenario].rows:
            if row.status == "ok":
                roles.setdefault(row.name, ROLE_ORDER.index(row.role))
    names = sorted(roles, key=roles.__getitem__)  # stable: first appearance within a role
    lines = [
        "| contestant | " + " | ".join(title for _, title in present) + " |",
        "|---|" + "---:|" * len(present),
    ]
    for name in names:
        cells = [_cell(by_scenario[scenario], name, throughput) for scenario, _ in present]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(table: Table, name: str, throughput: bool) -> str:
    row = table.row(name)
    if row is None or row.summary is None:
        return "—"
    median = row.summary.median
    figure = f"{median:,.0f}" if throughput or median >= 100 else f"{median:.1f}" if median >= 1 else f"{median:.2f}"
    return figure if row.ratio is None else f"{figure} ({format_ratio(row.ratio)}×)"
