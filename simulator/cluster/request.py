"""A client's request and its attempts, as the serving path around the engines sees them.

What this models: the difference between what a user asked for once (a *client request*) and each
try the client makes to get it served (an *attempt*: the first send and every retry). Each attempt
carries its own engine :class:`~simulator.engine.request.Request` (its own id, KV blocks and
timings) and walks the path client → gateway → router → replica(s) → back; ``stage`` says where it
is, so a client timeout or a crash can find and abort it. A client request ends exactly once, when
its client stops trying; an attempt ends exactly once too (see :mod:`simulator.metrics.recorder`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import simpy

from simulator.engine.request import Request
from simulator.workload.generator import RequestSpec

if TYPE_CHECKING:
    from simulator.cluster.replica import Replica


class Stage(enum.IntEnum):
    """Where an attempt is."""

    INBOUND = 0
    """On the network / in the gateway, not yet admitted."""
    QUEUED = 1
    """Held at the router (every replica saturated)."""
    DISPATCHED = 2
    """Routed to a replica in another region; on the wire."""
    ENGINE = 3
    """In a replica's scheduler (a prefill replica's, for disaggregated pools)."""
    PENDING_DECODE = 4
    """Prefilled; waiting for KV blocks on its decode replica."""
    TRANSFER = 5
    """KV cache on the link from prefill to decode replica."""
    RETURNING = 6
    """Served; the response is on its way back to the client."""
    ENDED = 7


@dataclass(slots=True, eq=False)
class ClientRequest:
    """One request as its client sees it: sent once, tried ``len(attempts)`` times, ended once."""

    request_id: int
    spec: RequestSpec
    arrival: float
    """When the client first sent it."""
    region: str
    """Region of the client."""
    done: simpy.Event | None
    """Fires (with this object) when the client stops trying: served, or given up (None: no one
    waits for it, as for an open-loop source's requests)."""
    auto: bool
    """True when no client process watches it (no timeout, no retries): its first attempt's end is
    its end."""
    attempts: list[Attempt] = field(default_factory=list)
    outcome: str = ""
    reason: str = ""
    end: float = -1.0


@dataclass(slots=True, eq=False)
class Attempt:
    """One try of a client request through the serving path."""

    creq: ClientRequest
    index: int
    """0 for the first send, k for retry k."""
    req: Request
    """The engine request of this attempt."""
    start: float
    tenant: str
    """Tenant as the gateway resolved it (the API key's owner when auth is on)."""
    max_tokens: int
    """Output tokens it will generate (after any cap under load)."""
    back_s: float = 0.0
    """One-way network delay of the response back to the client."""
    stage: Stage = Stage.INBOUND
    group: Any = None
    """Replica group that admitted it (router bookkeeping)."""
    replica: Replica | None = None
    """Replica holding it now (prefill replica, then decode replica)."""
    src: Replica | None = None
    """Prefill replica whose KV cache it is transferring."""
    transfer: Any = None
    """Its KV transfer on the link, while in TRANSFER."""
    pool: str = ""
    replica_id: int = -1
    """Global id of the replica that served it (the decode replica when disaggregated)."""
    charged_tokens: int = 0
    """Tokens the gateway charged up front (reconciled at the end)."""
    capped: bool = False
    outcome: str = ""
    reason: str = ""
    end: float = -1.0
    done: simpy.Event | None = None
    """Fires when the attempt's outcome reaches the client (client-process requests only)."""
    seq: int = -1
    """Its number in the order attempts started (given by the recorder; the attempts frame's
    order)."""
