"""simulator.simenv.Environment against SimPy's own: the same events in the same order, the same
clock, the same errors — with SimPy's event types (timeouts, processes, interrupts, conditions,
failures) running on it. (Whole runs are held to their recorded results by the goldens.)"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest
import simpy

from simulator.simenv import Environment, Loop, Timer, at, call_later, next_event


def _world(env: Any, log: list[tuple[float, str]]) -> Any:
    """Processes that exercise what SimPy offers a model: ties at one time, priorities (an
    interrupt is URGENT), conditions, a failed event caught, a process waiting on another."""

    def worker(name: str, delays: list[float]) -> Generator[Any, Any, str]:
        for d in delays:
            try:
                yield env.timeout(d)
                log.append((env.now, f"{name} woke"))
            except simpy.Interrupt as i:
                log.append((env.now, f"{name} interrupted by {i.cause}"))
        return name

    a = env.process(worker("a", [1.0, 1.0, 0.5, 2.0]))
    b = env.process(worker("b", [2.0, 0.5, 0.5]))

    def boss() -> Generator[Any, Any, None]:
        yield env.timeout(2.0)  # a tie with a's and b's wake-ups at 2.0
        a.interrupt("boss")
        got = yield env.all_of([env.timeout(1.0, "x"), b])
        log.append((env.now, f"all_of {sorted(map(str, got.values()))}"))
        first = yield env.any_of([env.timeout(3.0), env.timeout(0.25, "quick")])
        log.append((env.now, f"any_of {list(first.values())}"))
        ev = env.event()
        env.process(failer(ev))
        try:
            yield ev
        except ValueError as e:
            log.append((env.now, f"caught {e}"))
        log.append((env.now, f"a is {a.value if a.triggered else 'running'}"))

    def failer(ev: Any) -> Generator[Any, Any, None]:
        yield env.timeout(0.125)
        ev.fail(ValueError("boom"))

    def ties() -> Generator[Any, Any, None]:
        for k in range(3):
            ev = env.event()
            ev.callbacks.append(lambda _e, k=k: log.append((env.now, f"tie {k}")))
            ev.succeed()
        yield env.timeout(0)
        log.append((env.now, f"active {env.active_process is not None}"))

    env.process(boss())
    env.process(ties())
    return a


def test_the_same_trace_as_simpy() -> None:
    logs = []
    for make in (simpy.Environment, Environment):
        env = make(initial_time=0.0)
        log: list[tuple[float, str]] = []
        _world(env, log)
        env.run()
        logs.append(log)
        assert env.peek() == float("inf")
    assert logs[0] == logs[1]
    assert len(logs[0]) > 12


def test_run_until_a_time_an_event_and_resume() -> None:
    out = []
    for make in (simpy.Environment, Environment):
        env = make(initial_time=0.0)
        log: list[tuple[float, str]] = []
        a = _world(env, log)
        env.run(until=2.0)
        at_two = (env.now, list(log))
        value = env.run(until=a)  # resumes; stops once the process has ended
        out.append((at_two, value, env.now, list(log), env.peek()))
        env.run()
    assert out[0] == out[1]
    assert out[0][1] == "a"


@pytest.mark.parametrize("make", [simpy.Environment, Environment])
def test_the_same_errors(make: Callable[..., Any]) -> None:
    env = make(initial_time=0.0)
    env.run(until=1.0)
    with pytest.raises(ValueError, match="must be greater than the current simulation time"):
        env.run(until=0.5)
    never = env.event()
    with pytest.raises(RuntimeError, match='No scheduled events left but "until" event was not'):
        env.run(until=never)

    def crash() -> Generator[Any, Any, None]:
        yield env.timeout(1.0)
        raise KeyError("lost")
    env.process(crash())
    with pytest.raises(KeyError, match="lost"):
        env.run()
    with pytest.raises(simpy.core.EmptySchedule):
        env.step()


def test_timers_keep_simpys_clock_and_order() -> None:
    env = Environment(initial_time=0.0)
    seen: list[tuple[float, str]] = []
    env.timeout(1.0).callbacks.append(lambda _e: seen.append((env.now, "timeout")))
    call_later(env, 1.0, lambda _e: seen.append((env.now, "timer")))  # same time: after it
    ev = at(env, 0.5)
    ev.callbacks.append(lambda e: seen.append((env.now, f"at {type(e) is Timer}")))
    assert next_event(env) == env.peek() == 0.5
    env.run()
    assert seen == [(0.5, "at True"), (1.0, "timeout"), (1.0, "timer")]


def _loop_world(env: Any, start: Callable[[Any, Any], Any], log: list[tuple[float, str]]) -> Any:
    """A replica-like loop (timeouts, absolute-time timers, a wake-up event, an interrupt that
    ends it) started by ``start`` — SimPy's ``env.process`` or :class:`Loop` — among ordinary
    SimPy processes at the same times."""
    wake: list[Any] = []

    def loop() -> Generator[Any, Any, str]:
        try:
            while True:
                got = yield env.timeout(0.5, "t")
                log.append((env.now, f"loop {got}"))
                yield at(env, env.now + 0.25)
                log.append((env.now, "loop at"))
                ev = env.event()
                wake.append(ev)
                got = yield ev
                log.append((env.now, f"loop woke {got}"))
        except simpy.Interrupt as i:
            log.append((env.now, f"loop interrupted {i.cause}"))
            return "done"

    proc = start(env, loop())

    def other() -> Generator[Any, Any, None]:
        for k in range(4):
            yield env.timeout(0.75)  # ties with the loop's timers
            log.append((env.now, f"other {k} alive={proc.is_alive}"))
            if wake and not wake[-1].triggered:
                wake[-1].succeed(k)
        proc.interrupt("crash")
        yield env.timeout(0)
        log.append((env.now, f"other sees alive={proc.is_alive} value={proc._value}"))

    env.process(other())
    return proc


def test_a_compiled_loop_runs_as_simpys_process() -> None:
    logs = []
    for start in (lambda env, gen: env.process(gen), Loop):
        env = Environment(initial_time=0.0)
        log: list[tuple[float, str]] = []
        _loop_world(env, start, log)
        env.run()
        logs.append((log, env.num_events))
    assert logs[0] == logs[1]
    assert any("interrupted crash" in m for _, m in logs[0][0])


def test_a_failing_loop_crashes_the_run_as_simpy_does() -> None:
    def boom(env: Any) -> Generator[Any, Any, None]:
        yield env.timeout(1.0)
        raise KeyError("lost")

    for start in (lambda env, gen: env.process(gen), Loop):
        env = Environment(initial_time=0.0)
        start(env, boom(env))
        with pytest.raises(KeyError, match="lost"):
            env.run()
        assert env.now == 1.0

    env = Environment(initial_time=0.0)

    def bad() -> Generator[Any, Any, None]:
        yield 42
    Loop(env, bad())
    with pytest.raises(RuntimeError, match='Invalid yield value "42"'):
        env.run()
    with pytest.raises(ValueError, match="is not a generator"):
        Loop(env, 42)
