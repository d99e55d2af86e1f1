"""What a planner asks of a fleet: latency targets (SLOs) and how its GPUs are billed.

What this models: the two sections of a scenario a capacity planner adds to a what-if —
``slo:`` (TTFT / TPOT / E2E percentile targets, globally or per tenant) and ``cost:`` (which price
quote of the GPU profile applies — on-demand, spot or reserved — with per-GPU overrides, and whether
the provider bills per second or per started hour). Both are plain data; the arithmetic lives in
:mod:`simulator.metrics.summary` (attainment, goodput) and :mod:`simulator.cost` (dollars).

How a percentile target is checked: the target ``ttft_p90_ms: 500`` is *attained* by the fraction of
measured requests (arrived after the warm-up) that completed with a TTFT of at most 500 ms; it is
*met* when that fraction is at least 90%. Requests that were rejected, timed out or failed count as
not attaining it, so a fleet cannot pass by dropping its slow requests; a request still in flight
when the run stops counts as missing once it has already waited longer than the target, and is
left out (undecided) while it could still make it. This is the same as "the 90th percentile
(inverted-CDF definition, failed requests counted as infinitely slow) is at most 500 ms".

A single request *meets the SLO* when each of its latencies is within the loosest target set for that
metric (TTFT ≤ the largest TTFT target, TPOT ≤ the TPOT target, E2E ≤ the E2E target); goodput is the
rate of such requests. Leaves out: ITL targets, and SLOs on throughput.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from simulator.profiles import Strict

#: (field name, metric column in the requests frame, percentile) of every supported target.
TARGETS: tuple[tuple[str, str, int], ...] = (
    ("ttft_p50_ms", "ttft_s", 50),
    ("ttft_p90_ms", "ttft_s", 90),
    ("ttft_p99_ms", "ttft_s", 99),
    ("tpot_p90_ms", "tpot_s", 90),
    ("e2e_p99_ms", "e2e_s", 99),
)


class SloTargets(Strict):
    """Latency targets, each a percentile bound in milliseconds (unset = not checked)."""

    ttft_p50_ms: float | None = Field(default=None, gt=0)
    """Median time to first token, ms."""
    ttft_p90_ms: float | None = Field(default=None, gt=0)
    """90th-percentile time to first token, ms."""
    ttft_p99_ms: float | None = Field(default=None, gt=0)
    """99th-percentile time to first token, ms."""
    tpot_p90_ms: float | None = Field(default=None, gt=0)
    """90th-percentile time per output token (after the first), ms."""
    e2e_p99_ms: float | None = Field(default=None, gt=0)
    """99th-percentile end-to-end latency, ms."""

    def set_targets(self) -> dict[str, float]:
        """The targets that are set, by field name."""
        out: dict[str, float] = {}
        for name, _, _ in TARGETS:
            v = getattr(self, name)
            if v is not None:
                out[name] = float(v)
        return out


class SloConfig(SloTargets):
    """Service-level objectives: global targets, optionally refined per tenant."""

    tenants: dict[str, SloTargets] = Field(default_factory=dict)
    """Per-tenant targets, keyed by tenant name (the requests' ``tenant`` column; a run without
    tenants has one tenant, ``default``). A tenant's unset targets fall back to the global ones."""

    @model_validator(mode="after")
    def _check(self) -> SloConfig:
        if not self.set_targets() and not any(t.set_targets() for t in self.tenants.values()):
            raise ValueError("slo sets no target; set at least one of "
                             + ", ".join(n for n, _, _ in TARGETS)
                             + " (globally or under tenants:) or remove slo")
        return self

    def targets_for(self, tenant: str) -> dict[str, float]:
        """Effective targets of ``tenant``: the global ones, overridden by the tenant's own."""
        out = self.set_targets()
        own = self.tenants.get(tenant)
        if own is not None:
            out.update(own.set_targets())
        return out


class CostConfig(Strict):
    """How GPU time is priced and billed."""

    pricing: Literal["on_demand", "spot", "reserved"] = "on_demand"
    """Which kind of price quote from each GPU profile applies (the first quote of that kind, or of
    ``provider`` when set). ``reserved`` quotes are committed-use rates."""
    provider: str | None = None
    """Pick the first quote of ``pricing`` kind whose provider contains this text
    (case-insensitive), e.g. ``Nebius``; unset: the profile's first quote of that kind."""
    usd_per_gpu_hour: dict[str, float] = Field(default_factory=dict)
    """Price overrides in $ per GPU-hour keyed by GPU profile name (e.g. ``{H100-SXM: 2.5}``);
    they win over the profile's quotes."""
    granularity: Literal["second", "hour"] = "second"
    """Billing unit: ``second`` prorates; ``hour`` rounds each replica's billed time (from
    acquisition to release) up to whole hours — short runs of static fleets then look dear."""
    hours_per_month: float = Field(default=730.0, gt=0)
    """Hours in the "monthly cost" figure (730 = 8760 / 12)."""

    @model_validator(mode="after")
    def _check(self) -> CostConfig:
        bad = {k: v for k, v in self.usd_per_gpu_hour.items() if not v > 0}
        if bad:
            raise ValueError(f"usd_per_gpu_hour must be > 0 (got {bad}); remove the entry to use "
                             f"the GPU profile's price")
        return self
