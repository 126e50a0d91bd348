"""The issue's targets, checked against the figures of this run and printed next to them.

A missed target is reported, never an error: the bench always exits 0 once it has measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from . import floors
from . import stashly_cases as st
from .cases import LARGE, LARGE_KEYS, MANY_KEYS, Mode, Scenario
from .report import Row, Table
from .values import Shape

__all__ = ["Outcome", "Target", "evaluate", "render", "targets"]

Measure = Literal[
    "ratio",
    "p99_ratio",
    "median_us",
    "ops",
    "ops_ratio",
    "commands",
    "round_trips",
    "peer_speedup",
    "untagged_ratio",
    "single_ratio",
    "few_keys_ratio",
    "memory_peer_ratio",
]
UNITS: dict[Measure, str] = {
    "ratio": "x baseline",
    "p99_ratio": "x baseline p99",
    "median_us": " µs",
    "ops": " ops/s",
    "ops_ratio": "x baseline ops/s",
    "commands": " Redis commands",
    "round_trips": " round trips",
    "peer_speedup": "x faster than the fastest Redis peer",
    "untagged_ratio": "x the untagged @cached hit",
    "single_ratio": "x the single-server @cached hit",
    "few_keys_ratio": "x its hit over 100 keys",
    "memory_peer_ratio": "x the fastest in-process peer",
}


@dataclass(frozen=True)
class Target:
    label: str
    scenario: Scenario
    contestant: str
    measure: Measure
    limit: float
    compare: Literal["<=", ">=", "=="] = "<="


@dataclass(frozen=True)
class Outcome:
    target: Target
    value: float | None
    met: bool | None  # None: could not be measured in this run
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self.target), "value": self.value, "met": self.met, "detail": self.detail, "text": self.text}

    @property
    def text(self) -> str:
        t = self.target
        unit = UNITS[t.measure]
        goal = f"target {t.compare} {_figure(t.limit)}{unit}"
        if self.value is None:
            return f"{t.label}: n/a ({goal}) — {self.detail or 'not measured'}"
        verdict = "met" if self.met else "MISSED"
        extra = f"; {self.detail}" if self.detail else ""
        return f"{t.label}: {_figure(self.value)}{unit} ({goal}) — {verdict}{extra}"


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.2f}"


def targets() -> list[Target]:
    """The issue's targets, in its order: Redis HIT, MISS, concurrency, memory, local tier, get_many."""
    modes: tuple[Mode, ...] = ("sync", "async")
    shapes: tuple[tuple[Shape, str], ...] = (("dict", "dict"), ("model", "Pydantic"))
    found: list[Target] = []
    for mode in modes:
        for shape, shape_name in shapes:
            hit, label = Scenario("hit", mode, "300B", shape), f"stashly {mode} HIT 300B {shape_name}"
            found.append(Target(label, hit, st.DECORATOR, "ratio", 0.90))
            found.append(Target(label, hit, st.DECORATOR, "p99_ratio", 1.00))
    for mode in modes:
        label = f"stashly {mode} HIT 300B dict"
        found.append(Target(label, Scenario("hit", mode), st.DECORATOR, "peer_speedup", 1.3, ">="))
    for mode in modes:
        large = Scenario("hit", mode, "10KB")
        found.append(Target(f"stashly {mode} HIT 10KB dict", large, st.DECORATOR, "ratio", 0.85))
    for mode in modes:
        miss, label = Scenario("miss", mode), f"stashly {mode} MISS 300B dict"
        found.append(Target(label, miss, st.DECORATOR, "ratio", 1.00))
        found.append(Target(label, miss, st.DECORATOR, "round_trips", 2, "=="))
    tasks, hot = Scenario("tasks", "async", keys=100), Scenario("tasks", "async", keys=1)
    found.append(Target("stashly 100 tasks over 100 keys", tasks, st.DECORATOR, "ops_ratio", 1.0, ">="))
    found.append(Target("stashly 100 tasks over one hot key", hot, st.DECORATOR, "ops", 90_000, ">="))
    # Issue 15's in-process targets are for the sync rows; the async ones keep the first issue's (an await more).
    in_process = {"sync": (1.2, 1.5, 1.0, 1.5, 2.5), "async": (None, 3.0, 1.0, 3.0, 5.0)}
    for mode in modes:
        memory_get, memory_hit, local_get, local_hit, local_model = in_process[mode]
        dict_hit, model_hit = Scenario("hit", mode), Scenario("hit", mode, shape="model")
        if memory_get is not None:
            label = f"stashly memory:// {mode} manager.get"
            found.append(Target(label, dict_hit, st.MEMORY_GET, "median_us", memory_get))
        found.append(Target(f"stashly memory:// HIT {mode}", dict_hit, st.MEMORY, "median_us", memory_hit))
        found.append(Target(f"stashly local tier {mode} manager.get", dict_hit, st.LOCAL_GET, "median_us", local_get))
        found.append(Target(f"stashly local tier {mode} HIT dict", dict_hit, st.LOCAL, "median_us", local_hit))
        found.append(Target(f"stashly local tier {mode} HIT Pydantic", model_hit, st.LOCAL, "median_us", local_model))
    for mode in modes:  # issue 15: no cliff past the memos' bound
        many = Scenario("hit", mode, keys=MANY_KEYS)
        for contestant, where in ((st.DECORATOR, "Redis"), (st.MEMORY, "memory://")):
            label = f"stashly {mode} {where} HIT over {MANY_KEYS:,} keys"
            found.append(Target(label, many, contestant, "few_keys_ratio", 1.3))
    for mode in modes:  # issue 15: the sharing mode, against the peers that hand out their objects
        for size in LARGE:
            large = Scenario("hit", mode, size, keys=LARGE_KEYS)
            for contestant, where in ((st.MEMORY_SHARED, "memory://"), (st.LOCAL_SHARED, "local tier")):
                label = f"stashly {mode} {where} HIT {size} share=True"
                found.append(Target(label, large, contestant, "memory_peer_ratio", 2.0))
    for mode in modes:
        for count in (100, 1000):
            label = f"stashly {mode} get_many {count} keys"
            found.append(Target(label, Scenario("get_many", mode, keys=count), st.GET_MANY, "ratio", 1.15))
    for mode in modes:
        label = f"stashly {mode} HIT 300B dict with 3 tags"
        found.append(Target(label, Scenario("hit", mode), st.TAGGED, "untagged_ratio", 1.1))
    for mode in modes:  # issue 17: the Cluster hit next to the single server's, in the same run
        label = f"stashly {mode} Cluster HIT 300B dict"
        found.append(Target(label, Scenario("hit", mode), st.CLUSTER, "single_ratio", 1.15))
    return found


def evaluate(target: Target, tables: dict[Scenario, Table]) -> Outcome:
    table = tables.get(target.scenario)
    row = table.row(target.contestant) if table else None
    if table is None or row is None or row.summary is None:
        reason = "scenario not run" if table is None else (row.note if row else "contestant not in this run")
        return Outcome(target, None, None, reason)
    if target.measure == "few_keys_ratio":
        value, detail = _few_keys_ratio(row, tables.get(replace(target.scenario, keys=100)))
    else:
        value, detail = _MEASURES[target.measure](row, table)
    if value is None:
        return Outcome(target, None, None, detail)
    met = {"<=": value <= target.limit, ">=": value >= target.limit, "==": value == target.limit}[target.compare]
    return Outcome(target, value, met, detail)


def _ratio(row: Row, table: Table) -> tuple[float | None, str]:
    return row.ratio, ""


def _p99_ratio(row: Row, table: Table) -> tuple[float | None, str]:
    return row.p99_ratio, ""


def _median(row: Row, table: Table) -> tuple[float | None, str]:
    """The median; beside it, the pure-Python floor of the same table (a lookup and a decode), when measured."""
    floor = table.row(floors.DECODED) or table.row(floors.DECODED_MODEL)
    detail = ""
    if floor is not None and floor.summary is not None:
        detail = f"the floor {floor.name.strip('()').removeprefix('floor: ')} {floor.summary.median:.2f} µs"
    return (row.summary.median if row.summary else None), detail


def _commands(row: Row, table: Table) -> tuple[float | None, str]:
    if row.commands is None:
        return None, "commands not counted"
    c = row.commands
    return c.per_call, f"{c.sequence}; {c.round_trips:g} round trips"


def _round_trips(row: Row, table: Table) -> tuple[float | None, str]:
    if row.commands is None:
        return None, "commands not counted"
    c = row.commands
    return c.round_trips, f"{c.sequence}; {c.per_call:g} commands"


def _fastest_peer(table: Table, over_redis: bool) -> Row | None:
    """The fastest peer of ``table`` that reads from Redis (``over_redis``) or serves its hits in process."""
    peers = [
        r for r in table.rows if r.role == "peer" and (r.storage == "redis") == over_redis and r.summary is not None
    ]
    return min(peers, key=lambda r: r.summary.median if r.summary else float("inf"), default=None)


def _peer_speedup(row: Row, table: Table) -> tuple[float | None, str]:
    fastest = _fastest_peer(table, over_redis=True)
    if fastest is None or fastest.summary is None or row.summary is None:
        return None, "no Redis peer measured"
    return fastest.summary.median / row.summary.median, f"fastest Redis peer: {fastest.name}"


def _relative(row: Row, other: Row | None, absent: str) -> tuple[float | None, str]:
    """``row`` over ``other``: through their paired ratios to the baseline (each batch next to a baseline batch of
    the same round), which a drifting machine moves far less than it moves raw medians; ``absent`` says why not."""
    if other is None or other.summary is None or row.summary is None:
        return None, absent
    if row.ratio is not None and other.ratio:
        medians = f"{row.summary.median:.2f} vs {other.summary.median:.2f} µs"
        return row.ratio / other.ratio, f"{medians}; from the paired ratios to the baseline"
    return row.summary.median / other.summary.median, ""


def _memory_peer_ratio(row: Row, table: Table) -> tuple[float | None, str]:
    """``row`` over the fastest peer whose hits are served in process (it hands out the object it holds)."""
    fastest = _fastest_peer(table, over_redis=False)
    if fastest is None or fastest.summary is None or row.summary is None:
        return None, "no in-process peer measured"
    medians = f"{row.summary.median:.1f} vs {fastest.summary.median:.1f} µs"
    return row.summary.median / fastest.summary.median, f"{medians}, fastest: {fastest.name}"


def _untagged_ratio(row: Row, table: Table) -> tuple[float | None, str]:
    """``row`` over the plain @cached hit of the same table."""
    return _relative(row, table.row(st.DECORATOR), "no untagged @cached row")


def _few_keys_ratio(row: Row, few: Table | None) -> tuple[float | None, str]:
    """``row`` (a HIT over the large key set) over the same contestant's HIT over 100 keys, in the same run."""
    return _relative(row, few.row(row.name) if few else None, "the 100-key HIT was not measured in this run")


_MEASURES: dict[Measure, Callable[[Row, Table], tuple[float | None, str]]] = {
    "ratio": _ratio,
    "p99_ratio": _p99_ratio,
    "median_us": _median,
    "ops": _median,
    "ops_ratio": _ratio,
    "commands": _commands,
    "round_trips": _round_trips,
    "peer_speedup": _peer_speedup,
    "untagged_ratio": _untagged_ratio,
    "single_ratio": _untagged_ratio,  # the same row: the single server's plain @cached hit
    "memory_peer_ratio": _memory_peer_ratio,
}


def render(outcomes: list[Outcome]) -> str:
    return "\n".join(f"  {outcome.text}" for outcome in outcomes)
