"""Timing: prime and check each contestant, then interleave them in rounds so machine drift cancels.

Every round runs every contestant for one short batch. The scenarios come in a freshly shuffled order, and
inside each scenario its contestants run one after the other in a freshly shuffled order, so a contestant
and the baseline it is compared with are measured within a fraction of a second of each other. The ratio to
the baseline is paired: the median, over the rounds, of (this round's batch / the baseline's batch of the
same round). On a shared machine whose speed changes from one second to the next (this one alternates
between about 40 µs and 130 µs per GET as other work comes and goes) that is what stays steady; pooled
medians of two contestants can land in different regimes.

A latency sample is the time of one call (``perf_counter_ns`` around it); for contestants faster than
``MIN_SAMPLE_US`` a sample is the mean over a group of consecutive calls, sized once during warm-up, so the
clock's own cost stays small. A concurrency sample is the ops/s of 100 asyncio tasks each making
``CALLS_PER_TASK`` calls.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel

from .cases import Case, Env, ExternalCase, Scenario

__all__ = ["Summary", "Trial", "interleave", "paired_ratio", "prepare", "recheck", "summarize"]

MIN_SAMPLE_US = 20.0
MAX_GROUP = 2000
TASKS = 100
CALLS_PER_TASK = 5
FRESH_ARGUMENTS = 1_000_000  # MISS arguments start here, far from the 0..keys-1 that HITs use


@dataclass(frozen=True)
class Summary:
    """Latency in µs (``low`` is the fastest sample), or ops/s for concurrency (``low`` is the slowest batch)."""

    n: int
    median: float
    p99: float | None
    mean: float
    low: float


@dataclass(eq=False)
class Trial:
    """One contestant in one scenario, with its samples by round."""

    scenario: Scenario
    entry: Case | ExternalCase
    rounds: dict[int, list[float]] = field(default_factory=dict)
    group: int = 1
    note: str = ""
    failure: str | None = None
    next_arg: Callable[[], int] = field(init=False)

    def __post_init__(self) -> None:
        if self.scenario.op == "miss":
            self.next_arg = itertools.count(FRESH_ARGUMENTS).__next__
        else:
            self.next_arg = itertools.cycle(range(self.scenario.keys)).__next__
        self.note = self.entry.note

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def samples(self) -> list[float]:
        return [sample for batch in self.rounds.values() for sample in batch]


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summarize(trial: Trial) -> Summary | None:
    """Pooled figures over every round: the absolute numbers of the table."""
    ordered = sorted(trial.samples)
    if not ordered:
        return None
    if trial.scenario.throughput:
        return Summary(len(ordered), statistics.median(ordered), None, statistics.fmean(ordered), ordered[0])
    p99 = None if isinstance(trial.entry, ExternalCase) else percentile(ordered, 99)
    return Summary(len(ordered), statistics.median(ordered), p99, statistics.fmean(ordered), ordered[0])


def paired_ratio(trial: Trial, base: Trial, q: float = 50) -> float | None:
    """Median over the rounds both ran of (trial's q-th percentile / base's q-th percentile in that round)."""
    ratios = [
        percentile(sorted(trial.rounds[number]), q) / percentile(sorted(base.rounds[number]), q)
        for number in trial.rounds
        if number in base.rounds
    ]
    return statistics.median(ratios) if ratios else None


# -- preparing: prime, check, warm up, size the groups ----------------------------------------------------------


def prepare(trial: Trial, env: Env, warmup_seconds: float) -> None:
    """Prime the entries a HIT reads, check one result, warm up, and size the sample groups.

    A contestant that raises or returns a wrong value gets ``failure`` set and is left out of the rounds.
    """
    entry = trial.entry
    if isinstance(entry, ExternalCase):
        try:
            entry.sample()  # warms the server's value and proves the binary runs
        except Exception as exc:
            trial.failure = f"{type(exc).__name__}: {exc}"
        return
    try:
        if trial.scenario.op != "miss":
            for n in range(trial.scenario.keys):
                _call_once(env, entry.prime or entry.call, n)
        n = trial.next_arg()
        result = _call_once(env, entry.call, n)
        _check(trial, result, n)
        samples = batch(trial, env, warmup_seconds)
        if not trial.scenario.throughput:
            trial.group = min(MAX_GROUP, max(1, math.ceil(MIN_SAMPLE_US / statistics.median(samples))))
    except Exception as exc:
        trial.failure = f"{type(exc).__name__}: {exc}"


def recheck(trial: Trial, env: Env) -> None:
    """After the rounds, read every key a HIT contestant read: a wrong value (an entry evicted, expired or
    replaced during the run) means its figures are not HIT figures, so they are discarded."""
    entry = trial.entry
    if not isinstance(entry, Case) or trial.failure is not None or trial.scenario.op == "miss":
        return
    try:
        for n in range(trial.scenario.keys):
            _check(trial, _call_once(env, entry.call, n), n)
    except Exception as exc:
        trial.failure = f"wrong after the rounds, figures discarded: {type(exc).__name__}: {exc}"


def _call_once(env: Env, call: Callable[[int], Any], n: int) -> Any:
    result = call(n)
    if asyncio.iscoroutine(result):
        result = env.run(result)
    return result


def _plain(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=lambda v: v.model_dump(mode="json")))


def _check(trial: Trial, result: Any, n: int) -> None:
    entry = trial.entry
    assert isinstance(entry, Case)
    if entry.expected is None:
        return
    expected = entry.expected(n)
    if _plain(result) != _plain(expected):
        raise ValueError(f"returned {str(_plain(result))[:120]}…, expected {str(_plain(expected))[:120]}…")
    if isinstance(expected, BaseModel) and not isinstance(result, BaseModel) and entry.role != "baseline":
        remark = f"returns a {type(result).__name__}, not the model"
        if remark not in trial.note:
            trial.note = "; ".join(filter(None, [trial.note, remark]))


# -- batches ----------------------------------------------------------------------------------------------------


def batch(trial: Trial, env: Env, seconds: float) -> list[float]:
    """Run the contestant for about ``seconds``; the samples taken."""
    entry = trial.entry
    budget = int(seconds * 1e9)
    if isinstance(entry, ExternalCase):
        samples = [entry.sample()]
    elif trial.scenario.throughput:
        samples = env.run(_tasks_batch(entry.call, trial.scenario.keys, budget))
    elif entry.is_async:
        samples = env.run(_async_batch(entry.call, trial.next_arg, trial.group, budget))
    else:
        samples = _sync_batch(entry.call, trial.next_arg, trial.group, budget)
    return samples


def _sync_batch(call: Callable[[int], Any], next_arg: Callable[[], int], group: int, budget: int) -> list[float]:
    clock = time.perf_counter_ns
    samples: list[float] = []
    deadline = clock() + budget
    while True:
        arguments = [next_arg() for _ in range(group)]
        start = clock()
        for argument in arguments:
            call(argument)
        end = clock()
        samples.append((end - start) / group / 1000)
        if end >= deadline:
            return samples


async def _async_batch(call: Callable[[int], Any], next_arg: Callable[[], int], group: int, budget: int) -> list[float]:
    clock = time.perf_counter_ns
    samples: list[float] = []
    deadline = clock() + budget
    while True:
        arguments = [next_arg() for _ in range(group)]
        start = clock()
        for argument in arguments:
            await call(argument)
        end = clock()
        samples.append((end - start) / group / 1000)
        if end >= deadline:
            return samples


async def _tasks_batch(call: Callable[[int], Any], keys: int, budget: int) -> list[float]:
    async def worker(offset: int) -> None:
        for i in range(CALLS_PER_TASK):
            await call((offset + i) % keys)

    clock = time.perf_counter_ns
    samples: list[float] = []
    deadline = clock() + budget
    while True:
        start = clock()
        await asyncio.gather(*(worker(task) for task in range(TASKS)))
        end = clock()
        samples.append(TASKS * CALLS_PER_TASK / ((end - start) / 1e9))
        if end >= deadline:
            return samples


# -- rounds -----------------------------------------------------------------------------------------------------


def interleave(trials: list[Trial], rounds: int, seconds: float, env: Env, rng: random.Random) -> None:
    """``rounds`` rounds; each runs every healthy trial for one batch of about ``seconds``.

    Scenario by scenario, both orders shuffled every round (see the module docstring for why).
    """
    blocks: dict[Scenario, list[Trial]] = {}
    for trial in trials:
        if trial.failure is None:
            trial.rounds.clear()
            blocks.setdefault(trial.scenario, []).append(trial)
    gc.collect()
    gc.freeze()
    started = time.monotonic()
    for number in range(1, rounds + 1):
        scenarios = list(blocks)
        rng.shuffle(scenarios)
        for scenario in scenarios:
            order = blocks[scenario][:]
            rng.shuffle(order)
            for trial in order:
                if trial.failure is None:
                    _measure_round(trial, number, seconds, env)
        elapsed = time.monotonic() - started
        print(f"\r  round {number}/{rounds} ({elapsed:.0f} s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    gc.unfreeze()


def _measure_round(trial: Trial, number: int, seconds: float, env: Env) -> None:
    # Each batch starts with no garbage of another's to collect; freezing what survives keeps the collector's
    # cost flat (a full collection of this process takes tens of milliseconds otherwise).
    gc.collect()
    gc.freeze()
    try:
        trial.rounds[number] = batch(trial, env, seconds)
    except Exception as exc:
        trial.failure = f"failed in round {number}: {type(exc).__name__}: {exc}"
