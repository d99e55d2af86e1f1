"""The simulation clock and event queue: SimPy's ``Environment`` as a compiled class.

What this models: nothing of the serving path — it is the discrete-event kernel every process of
the simulation runs on. It is ``simpy.core.Environment`` (SimPy 4.1) statement for statement —
the same heap of ``(time, priority, event id, event)``, the same event ids in the same order, the
same ``step``/``run`` semantics (callbacks cleared before they run, ``StopSimulation`` re-queues
the remaining callbacks, a failed event that is not defused crashes the run, ``run(until=…)`` with
a number schedules an URGENT stop event) — so a run on it processes the same events in the same
order as on ``simpy.Environment`` (``tests/test_simenv.py`` runs SimPy's own event types on both
and compares; the goldens hold whole runs to their recorded results). SimPy's events, processes
and conditions run on it unchanged: they only call ``schedule``, read ``now``/``active_process``
and set ``_active_proc``.

Why: compiled with the engine (:mod:`simulator._native`), its attributes (``_now``, ``_queue``,
the event counter) are fields the compiled modules read directly, not entries of a Python
``__dict__`` found by a generic attribute lookup (the replica's fast path and the timers read them
several times per event), and :meth:`Environment.step` runs as C rather than as interpreted
Python, about five times per simulated request. :class:`Timer` is the timeout of the compiled
modules (a replica's step end, an arrival, the API server's delays), and :class:`Loop` is
``simpy.Process`` as a compiled class, for a replica's engine loop (resumed at every step that
reaches another event; SimPy's ``Process._resume`` is interpreted).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any, Final, cast

import simpy
from simpy.core import EmptySchedule, StopSimulation
from simpy.events import (
    NORMAL,
    PENDING,
    URGENT,
    AllOf,
    AnyOf,
    Event,
    Interruption,
    Process,
    Timeout,
)

INFINITY = float("inf")
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop
"""NOTE: bound once (a compiled module reads a Final as a C static; ``heapq.heappush`` would be a
generic attribute lookup on the module at every call)."""


class Timer:
    """A timeout as a compiled event: what SimPy reads of a ``simpy.Timeout`` — ``callbacks``,
    ``_ok``, ``_value`` (:meth:`Environment.step`, ``Process._resume``, an ``Interruption`` that
    detaches a process) — as fields, without a Python ``__dict__``. Scheduled by :func:`at` and
    :func:`call_later` exactly as ``env.timeout`` schedules (priority NORMAL, the next event id);
    a replica's step end, an arrival and the API server's two delays per request are one each."""

    __slots__ = ("_ok", "_value", "callbacks", "env")

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.callbacks: list[Any] | None = []
        self._value: Any = None
        self._ok = True


class Loop:
    """A SimPy process as a compiled class: ``simpy.Process`` statement for statement — started by
    an URGENT event now, resumed with each yielded event's value (a failed event's exception thrown
    in, marked defused), ended with its generator's return value or exception as its own value and
    an event of its own, interruptible (SimPy's ``Interruption`` runs on it unchanged) — whose
    resumes run as C instead of interpreted Python. For a process no one yields on or puts in a
    condition (it is not a ``simpy.Event``): a replica's engine loop, resumed at every step that
    reaches another event."""

    __slots__ = ("_generator", "_ok", "_resume_cb", "_target", "_value", "callbacks", "env")

    def __init__(self, env: Environment, generator: Any) -> None:
        if not hasattr(generator, "throw"):
            raise ValueError(f"{generator} is not a generator.")
        self.env = env
        self.callbacks: list[Any] | None = []
        self._generator = generator
        self._value: Any = PENDING
        self._ok = True
        self._resume_cb: Callable[[Any], None] = self._resume
        """The resume callback, bound once (SimPy makes one per yield)."""
        start = Timer(env)  # SimPy's Initialize: ok, no value, URGENT now
        start.callbacks = [self._resume_cb]
        push(env, env._now, URGENT, start)
        self._target: Any = start

    @property
    def is_alive(self) -> bool:
        """True until the generator exits."""
        return self._value is PENDING

    @property
    def target(self) -> Any:
        """The event the process waits for."""
        return self._target

    def interrupt(self, cause: Any = None) -> None:
        """Throw ``simpy.Interrupt(cause)`` into the process (SimPy's ``Interruption``)."""
        Interruption(cast(Process, self), cause)

    def _resume(self, event: Any) -> None:
        """``simpy.Process._resume``: send the event's value in (or throw its exception), until
        the generator yields an event not yet processed, or exits."""
        env = self.env
        env._active_proc = self
        gen = self._generator
        while True:
            try:
                if isinstance(event, Timer):
                    event = gen.send(event._value)  # NOTE: a Timer never fails
                elif event._ok:
                    event = gen.send(event._value)
                else:
                    event._defused = True
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    event = gen.throw(exc)
            except StopIteration as e:
                event = None
                self._ok = True
                self._value = e.args[0] if len(e.args) else None
                env.schedule(self)
                break
            except BaseException as e:
                event = None
                self._ok = False
                tb = e.__traceback__
                e.__traceback__ = tb.tb_next if tb is not None else None
                self._value = e
                env.schedule(self)
                break
            if isinstance(event, Timer):
                callbacks = event.callbacks
            else:
                try:
                    callbacks = event.callbacks
                except AttributeError:
                    raise RuntimeError(f'Invalid yield value "{event}"') from None
            if callbacks is not None:
                callbacks.append(self._resume_cb)
                break
        self._target = event
        env._active_proc = None


def at(env: Environment, when: float) -> simpy.Event:
    """A :class:`Timer` that fires at the absolute time ``when`` (a process yields it): the end of
    a step of a replica that ran ahead, whose clock must read exactly what step-by-step timeouts
    would have made it (``env.now + (when − env.now)`` need not be ``when`` in floating point)."""
    ev = Timer(env)
    push(env, when, NORMAL, ev)
    # NOTE: typed as the SimPy event it stands in for.
    return cast(simpy.Event, ev)


def call_later(env: Environment, delay: float, callback: Callable[[Timer], None],
               value: Any = None) -> None:
    """``env.timeout(delay, value).callbacks.append(callback)`` as a :class:`Timer`: at ``env.now
    + delay``, priority NORMAL, the next event id — the same clock and order of events. The
    callback gets the timer (``ev._value`` is ``value``: no closure or partial per call)."""
    ev = Timer(env)
    ev.callbacks = [callback]
    ev._value = value
    push(env, env._now + delay, NORMAL, ev)


def push(env: Environment, when: float, priority: int, event: Any) -> None:
    """Put ``event`` on the heap at ``when`` with ``priority`` and the next event id (what
    :meth:`Environment.schedule` does, at an absolute time)."""
    eid = env._count
    env._count = eid + 1
    _heappush(env._queue, (when, priority, eid, event))


def next_event(env: Environment) -> float:
    """``env.peek()`` as a function (a method call from compiled code costs more than the read)."""
    queue = env._queue
    return queue[0][0] if queue else INFINITY


class Environment:
    """``simpy.Environment``, compiled (see the module docstring). Pass it wherever SimPy wants
    an environment: ``simpy.Timeout(env, 1)``, ``env.process(gen)``, ``simpy.AnyOf(env, …)``."""

    def __init__(self, initial_time: float = 0.0) -> None:
        self._now: float = initial_time
        self._queue: list[tuple[float, int, int, Any]] = []
        """Every scheduled event: ``(time, priority, event id, event)``, a heap."""
        self._count = 0
        """The next event id (SimPy's ``next(env._eid)``): events scheduled so far."""
        self._active_proc: Any = None
        """The process being resumed (SimPy's ``Process._resume`` sets it)."""

    @property
    def now(self) -> float:
        """The current simulation time."""
        return self._now

    @property
    def num_events(self) -> int:
        """Events scheduled so far (processed or pending)."""
        return self._count

    @property
    def active_process(self) -> Any:
        """The process being resumed, or None."""
        return self._active_proc

    def _sim(self) -> simpy.Environment:
        # NOTE: SimPy's classes are typed for its own Environment; this is one in all but type.
        return cast(simpy.Environment, self)

    def process(self, generator: Any) -> Process:
        """A new :class:`simpy.Process` of ``generator``."""
        return Process(self._sim(), generator)

    def timeout(self, delay: float = 0, value: Any = None) -> Timeout:
        """A new :class:`simpy.Timeout` of ``delay``."""
        return Timeout(self._sim(), delay, value)

    def event(self) -> Event:
        """A new, untriggered :class:`simpy.Event`."""
        return Event(self._sim())

    def all_of(self, events: Iterable[Event]) -> AllOf:
        return AllOf(self._sim(), events)

    def any_of(self, events: Iterable[Event]) -> AnyOf:
        return AnyOf(self._sim(), events)

    def schedule(self, event: Any, priority: int = NORMAL, delay: float = 0) -> None:
        """Schedule ``event`` with ``priority`` after ``delay``."""
        push(self, self._now + delay, priority, event)

    def peek(self) -> float:
        """The time of the next scheduled event (infinity if none)."""
        queue = self._queue
        return queue[0][0] if queue else INFINITY

    def step(self) -> None:
        """Process the next event (``EmptySchedule`` if there is none)."""
        queue = self._queue
        if not queue:
            raise EmptySchedule()
        now, _, _, event = _heappop(queue)
        self._now = now
        if isinstance(event, Timer):
            # NOTE: its fields read directly; a Timer never fails.
            timer_callbacks = event.callbacks
            event.callbacks = None
            assert timer_callbacks is not None
            self._call(event, timer_callbacks)
            return
        callbacks = event.callbacks
        event.callbacks = None
        self._call(event, callbacks)
        if not event._ok and not hasattr(event, "_defused"):
            # A failed event no one defused crashes the run (with a copy of its exception).
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc

    def _call(self, event: Any, callbacks: list[Any]) -> None:
        """Run an event's callbacks, as SimPy's ``step`` does."""
        try:
            for callback in callbacks:
                callback(event)
        except StopSimulation:
            # The remaining callbacks go with the event, processed when the run resumes.
            event.callbacks = callbacks[callbacks.index(callback) + 1:]
            self.schedule(event, -1)
            raise

    def run(self, until: Any = None) -> Any:
        """Step until ``until``: None — no events left; an event — it has been processed (its
        value is returned); a number — the clock reaches it."""
        if until is not None:
            if not isinstance(until, Event):
                at = until if isinstance(until, int) else float(until)
                if at <= self._now:
                    raise ValueError(
                        f"until ({at}) must be greater than the current simulation time")
                stop = Event(self._sim())
                stop._ok = True
                stop._value = None
                self.schedule(stop, URGENT, at - self._now)
                until = stop
            elif until.callbacks is None:
                return until.value  # already processed
            until.callbacks.append(StopSimulation.callback)
        try:
            while True:
                self.step()
        except StopSimulation as exc:
            return exc.args[0]
        except EmptySchedule:
            if until is not None:
                assert not until.triggered
                raise RuntimeError(f'No scheduled events left but "until" event was not '
                                   f"triggered: {until}") from None
        return None
