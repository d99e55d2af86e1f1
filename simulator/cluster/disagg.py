"""Prefill/decode disaggregation: the KV-cache link between a prefill and a decode replica.

What this models: xPyD serving (vLLM's P/D with a KV connector such as NIXL or Mooncake, llm-d,
Dynamo). A request is first sent to a *prefill* pool, which computes its prompt; the decode replica
chosen for it reserves KV blocks for the prompt (admission waits until it has them — see
:meth:`simulator.cluster.replica.Replica.admit_remote`), then pulls the prompt's KV cache over a
link: prompt tokens × KV bytes per token (2 × layers × kv_heads × head_dim × dtype bytes, the whole
model's KV, all TP ranks together). The link has a bandwidth that concurrent transfers share equally
(processor sharing) and a fixed per-transfer latency. Then the request decodes on the decode replica,
which also produces the first token the client sees (the prefill's sampled token is discarded, as
vLLM's P/D proxy does), so TTFT = prefill + transfer + one decode step.

Leaves out: layer-wise pipelined transfer (the whole prompt is sent after the prefill), decode-side
prefix-cache hits that would shorten the transfer, NIC contention between different links, and the
prefill side holding its blocks until the decode has pulled them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import simpy

from simulator.simenv import Environment


@dataclass(slots=True, eq=False)
class Transfer:
    """One KV transfer on a link."""

    remaining: float
    """Bytes still to send."""
    on_done: Callable[[], None]
    done: bool = False
    cancelled: bool = False


class Link:
    """A link of ``bandwidth`` bytes/s shared equally by its active transfers, plus ``latency`` s
    per transfer. Completion times are recomputed whenever a transfer starts or ends."""

    def __init__(self, env: Environment, bandwidth_bytes_s: float, latency_s: float) -> None:
        self.env = env
        self.bandwidth = bandwidth_bytes_s
        self.latency = latency_s
        self.active: list[Transfer] = []
        self._last = 0.0
        self._gen = 0
        self.bytes_sent = 0.0
        self.transfers = 0
        self.busy_time = 0.0

    def start(self, nbytes: float, on_done: Callable[[], None]) -> Transfer:
        """Start sending ``nbytes``; ``on_done`` runs when they have arrived (after the latency)."""
        self._advance()
        t = Transfer(max(float(nbytes), 0.0), on_done)
        self.active.append(t)
        self.transfers += 1
        self.bytes_sent += t.remaining
        self._reschedule()
        return t

    def cancel(self, t: Transfer) -> None:
        """Abandon a transfer (client gone, an end died)."""
        if t.cancelled:
            return
        t.cancelled = True  # NOTE: also stops a delivery still in its latency phase
        if not t.done and t in self.active:
            self._advance()
            self.active.remove(t)
            self._reschedule()

    def _advance(self) -> None:
        now = self.env.now
        dt = now - self._last
        if dt > 0 and self.active:
            share = self.bandwidth / len(self.active) * dt
            for t in self.active:
                t.remaining -= share
            self.busy_time += dt
        self._last = now

    def _reschedule(self) -> None:
        self._gen += 1
        if not self.active:
            return
        gen = self._gen
        first = min(t.remaining for t in self.active)
        delay = max(first, 0.0) * len(self.active) / self.bandwidth
        self.env.timeout(delay).callbacks.append(lambda _e: self._on_timer(gen))

    def _on_timer(self, gen: int) -> None:
        if gen != self._gen:
            return  # superseded by a later start/cancel
        self._advance()
        # NOTE: a relative tolerance absorbs float drift from repeated sharing.
        eps = 1e-9 * self.bandwidth
        finished = [t for t in self.active if t.remaining <= eps]
        self.active = [t for t in self.active if t.remaining > eps]
        self._reschedule()
        for t in finished:
            t.done = True
            if self.latency > 0:
                self.env.timeout(self.latency).callbacks.append(_Deliver(t))
            else:
                _deliver(t)


def _deliver(t: Transfer) -> None:
    if not t.cancelled:
        t.on_done()


class _Deliver:
    """Event callback delivering one transfer (after the link latency)."""

    __slots__ = ("t",)

    def __init__(self, t: Transfer) -> None:
        self.t = t

    def __call__(self, _event: simpy.Event) -> None:
        _deliver(self.t)
