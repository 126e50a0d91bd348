"""From samples to figures: one table per scenario, with each row's ratio to the baseline of the same run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .cases import Role, Scenario, Storage, Unavailable
from .commands import Commands
from .measure import Summary, Trial, paired_ratio, summarize

__all__ = ["Row", "Table", "build", "format_ratio", "render", "to_json"]


@dataclass(frozen=True)
class Row:
    name: str
    role: Role
    status: str  # "ok", "n/a" (cannot run here) or "failed"
    storage: Storage | None = None
    summary: Summary | None = None
    ratio: float | None = None
    p99_ratio: float | None = None
    group: int = 1
    commands: Commands | None = None
    note: str = ""


@dataclass(frozen=True)
class Table:
    scenario: Scenario
    rows: list[Row]

    @property
    def unit(self) -> str:
        return "ops/s" if self.scenario.throughput else "µs"

    def row(self, name: str) -> Row | None:
        return next((row for row in self.rows if row.name == name), None)


def build(
    scenario: Scenario, trials: list[Trial], unavailable: list[Unavailable], commands: dict[Trial, Commands]
) -> Table:
    base = next((t for t in trials if t.entry.role == "baseline" and t.failure is None and t.rounds), None)
    rows: list[Row] = []
    for trial in trials:
        summary = summarize(trial)
        storage = getattr(trial.entry, "storage", None)
        if trial.failure is not None or summary is None:
            rows.append(Row(trial.name, trial.entry.role, "failed", storage, note=trial.failure or "no samples"))
            continue
        ratio = p99_ratio = None
        if base is not None:
            ratio = paired_ratio(trial, base)
            if summary.p99 is not None and not scenario.throughput:
                p99_ratio = paired_ratio(trial, base, 99)
        note = trial.note
        if trial.group > 1:
            note = "; ".join(filter(None, [note, f"sample = mean of {trial.group} calls"]))
        counted = commands.get(trial)
        row = Row(trial.name, trial.entry.role, "ok", storage, summary, ratio, p99_ratio, trial.group, counted, note)
        rows.append(row)
    rows += [Row(entry.name, entry.role, "n/a", note=entry.reason) for entry in unavailable]
    return Table(scenario, rows)


# -- text -------------------------------------------------------------------------------------------------------

NAME_WIDTH = 46


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_ratio(value: float | None) -> str:
    """A ratio to the baseline as printed: two decimals, and "<0.01" rather than a misleading 0.00."""
    if value is None:
        return "—"
    return "<0.01" if value < 0.005 else f"{value:.2f}"


def render(table: Table) -> str:
    if table.scenario.throughput:
        header = f"{'median ops/s':>13} {'slowest':>9} {'×base':>6}"
    else:
        header = f"{'median µs':>10} {'p99 µs':>9} {'×base':>6} {'p99×b':>6} {'cmds':>5} {'trips':>5}"
    lines = [f"{table.scenario.title:<{NAME_WIDTH + 2}}{header}  commands · notes"]
    for row in table.rows:
        name = row.name if len(row.name) <= NAME_WIDTH else row.name[: NAME_WIDTH - 1] + "…"
        if row.summary is None:
            lines.append(f"  {name:<{NAME_WIDTH}}{row.status:>10}  {row.note}")
            continue
        s = row.summary
        if table.scenario.throughput:
            figures = f"{_number(s.median):>13} {_number(s.low):>9} {format_ratio(row.ratio):>6}"
        else:
            c = row.commands
            cmds = "—" if c is None else f"{c.per_call:g}"
            trips = "—" if c is None else f"{c.round_trips:g}"
            figures = f"{_number(s.median):>10} {_number(s.p99):>9} {format_ratio(row.ratio):>6}"
            figures += f" {format_ratio(row.p99_ratio):>6} {cmds:>5} {trips:>5}"
        detail = "; ".join(filter(None, [row.commands.sequence if row.commands else "", row.note]))
        lines.append(f"  {name:<{NAME_WIDTH}}{figures}  {detail}".rstrip())
    return "\n".join(lines)


# -- JSON -------------------------------------------------------------------------------------------------------


def to_json(table: Table) -> dict[str, Any]:
    return {
        "scenario": {**asdict(table.scenario), "title": table.scenario.title},
        "unit": table.unit,
        "rows": [asdict(row) for row in table.rows],
    }
