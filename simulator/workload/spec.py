"""The workload section of a scenario: arrivals × lengths × sessions × tenants, as strict configs.

What this models: the traffic a capacity planner feeds the fleet — *when* requests arrive (renewal,
bursty, time-varying, closed-loop, offline or replayed from a real trace), *how long* their prompts
and outputs are (fixed, normal, lognormal, a user's column, a shipped quantile table; jointly with a
rank correlation), *what they share* (a system prompt, the context of earlier turns of a session, a
trace's prefix blocks) and *who sends them* (tenants with their own arrival process, lengths,
priority, SLO class and API key). Every model is strict (unknown fields are errors), frozen and
documented field by field; they are re-exported from :mod:`simulator.config`.

Named workloads: ``workload: {name: azure-conv-2023}`` starts from the shipped spec
``workloads/azure-conv-2023.yaml`` and ``workload: {spec: path/to/mine.yaml}`` from a user's spec (a
path absolute, relative to the working directory, or relative to the repository top level). A spec
file holds WorkloadConfig fields; the fields written next to ``name``/``spec`` override it (nested
mappings are merged, so ``--set workload.arrival.rate=5`` changes only the rate; a different
``kind`` replaces the whole mapping).

Leaves out: request contents (only token counts and which blocks are identical matter to the
engine), client-side timeouts and retries (the fleet's clients), random think times for closed-loop
clients (sessions have them).
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from simulator.errors import ConfigError, clip, load_yaml_model, read_yaml
from simulator.profiles import Strict, data_root

# Physical upper bounds of every count, size, rate and time (README "What servesim refuses and
# why"): far past any real deployment, low enough that nothing downstream overflows a 64-bit
# integer or allocates without end.
MAX_TOKENS = 10_000_000
"""Tokens of one prompt, output or prefix: 10M, the longest context window of any model (Llama 4
Scout)."""
MAX_REQUESTS = 100_000_000
"""Requests (or clients) of one run: 100M, about a day of a 1,000 req/s service."""
MAX_RATE = 1_000_000.0
"""Requests per second: 1M, beyond any single fleet."""
MAX_SECONDS = 100_000_000.0
"""Any duration: about three years of simulated time."""
MAX_TURNS = 10_000
"""Turns of one conversation."""
MAX_TIME_SCALE = 1_000_000.0
"""Trace ``time_scale`` (a year of trace played in 30 s)."""
MAX_RATE_SCALE = 1_000.0
"""Trace ``rate_scale``: copies of the trace superposed (each is held in memory)."""
NAME_CHARS = 100
"""Longest workload or table name."""

# --------------------------------------------------------------------------------------------
# Lengths
# --------------------------------------------------------------------------------------------


class FixedLength(Strict):
    """Every request has the same length."""

    kind: Literal["fixed"] = "fixed"
    value: int = Field(ge=1, le=MAX_TOKENS)
    """Tokens."""


class UniformLength(Strict):
    """Uniform integers in [min, max] — vLLM's benchmark ``random`` dataset with
    ``--random-range-ratio r`` draws lengths uniformly in [L × (1 − r), L × (1 + r)] (vLLM ≥ 0.10;
    before that [L × r, L]; ``vllm/benchmarks/datasets.py`` RandomDataset)."""

    kind: Literal["uniform"] = "uniform"
    min: int = Field(ge=1, le=MAX_TOKENS)
    """Shortest length (inclusive)."""
    max: int = Field(ge=1, le=MAX_TOKENS)
    """Longest length (inclusive)."""

    @model_validator(mode="after")
    def _order(self) -> UniformLength:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class NormalLength(Strict):
    """Normal lengths, rounded and clipped to [min, max]."""

    kind: Literal["normal"] = "normal"
    mean: float = Field(gt=0, le=MAX_TOKENS)
    """Mean tokens before clipping."""
    std: float = Field(ge=0, le=MAX_TOKENS)
    """Standard deviation before clipping."""
    min: int = Field(default=1, ge=1, le=MAX_TOKENS)
    """Lower clip."""
    max: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    """Upper clip; None: the deployment's ``max_model_len`` (− 1 for prompts, which need room for
    one output token)."""


class LognormalLength(Strict):
    """Lognormal lengths with a given mean and coefficient of variation, clipped to [min, max]."""

    kind: Literal["lognormal"] = "lognormal"
    mean: float = Field(gt=0, le=MAX_TOKENS)
    """Mean tokens the requests get, after clipping to [min, max]: the underlying lognormal's
    location is solved for it (simulator.workload.lengths.solve_lognormal_mu); must lie strictly
    between min and max."""
    cv: float = Field(default=1.0, ge=0.001, le=100)
    """Shape: standard deviation / mean of the underlying (unclipped) lognormal."""
    min: int = Field(default=1, ge=1, le=MAX_TOKENS)
    """Lower clip."""
    max: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    """Upper clip; None: the deployment's ``max_model_len`` (− 1 for prompts)."""


class EmpiricalLength(Strict):
    """Lengths taken from a column of a user's CSV file. When input_len and output_len both name the
    same file, whole rows are drawn, which keeps each (input, output) pair together."""

    kind: Literal["empirical"] = "empirical"
    file: str
    """CSV path (relative paths are taken from the scenario file's folder)."""
    column: str
    """Column holding token counts."""
    order: Literal["random", "sequential"] = "random"
    """``random``: resample rows with replacement; ``sequential``: play the rows in file order,
    starting over at the end (replays a recorded benchmark's requests in order)."""


class TableLength(Strict):
    """Lengths drawn from a shipped quantile table (``workloads/lengths/<name>.yaml``)."""

    kind: Literal["table"] = "table"
    name: str = "sharegpt-vllm-bench"
    """Table name, e.g. ``sharegpt-vllm-bench``, ``sharegpt``, ``arxiv-summarization``, ``bwb``,
    ``azure-conv-2023``, ``azure-code-2023``, ``mooncake-conversation``."""
    max: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    """Optional upper clip."""


Length = Annotated[FixedLength | UniformLength | NormalLength | LognormalLength | EmpiricalLength
                   | TableLength,
                   Field(discriminator="kind")]


# --------------------------------------------------------------------------------------------
# Arrivals
# --------------------------------------------------------------------------------------------

MAX_CV = 20.0


class PoissonArrivals(Strict):
    """Open loop: exponential inter-arrival times (vLLM benchmark's ``--request-rate``)."""

    kind: Literal["poisson"] = "poisson"
    rate: float = Field(gt=0, le=MAX_RATE)
    """Requests per second."""


class GammaArrivals(Strict):
    """Open loop, renewal: Gamma inter-arrival times with a mean rate and a coefficient of variation
    (cv > 1: bursty, cv = 1: Poisson, cv < 1: smoother than Poisson)."""

    kind: Literal["gamma"] = "gamma"
    rate: float = Field(gt=0, le=MAX_RATE)
    """Mean requests per second."""
    cv: float = Field(ge=0.01, le=MAX_CV)
    """Standard deviation / mean of the inter-arrival times (Gamma shape = 1 / cv²)."""


class WeibullArrivals(Strict):
    """Open loop, renewal: Weibull inter-arrival times with a mean rate and a coefficient of
    variation (the shape is solved from the CV; heavier tail than Gamma at the same CV)."""

    kind: Literal["weibull"] = "weibull"
    rate: float = Field(gt=0, le=MAX_RATE)
    """Mean requests per second."""
    cv: float = Field(gt=0.05, le=MAX_CV)
    """Standard deviation / mean of the inter-arrival times."""


class OnOffArrivals(Strict):
    """Bursts: Poisson at ``rate_on`` during ON periods and ``rate_off`` during OFF periods (an
    interrupted Poisson process when rate_off = 0). Starts at the beginning of an ON period."""

    kind: Literal["on_off"] = "on_off"
    rate_on: float = Field(gt=0, le=MAX_RATE)
    """Requests per second during a burst."""
    rate_off: float = Field(default=0.0, ge=0, le=MAX_RATE)
    """Requests per second between bursts."""
    on_s: float = Field(gt=0, le=MAX_SECONDS)
    """Mean length of a burst (seconds)."""
    off_s: float = Field(gt=0, le=MAX_SECONDS)
    """Mean length of a pause (seconds)."""
    periods: Literal["exponential", "fixed"] = "exponential"
    """``exponential``: period lengths are exponential with the given means (a Markov-modulated
    process); ``fixed``: exactly ``on_s`` then ``off_s``, repeating (a square wave)."""


class MMPPState(Strict):
    """One state of a Markov-modulated Poisson process."""

    rate: float = Field(ge=0, le=MAX_RATE)
    """Requests per second while in this state."""
    mean_s: float = Field(gt=0, le=MAX_SECONDS)
    """Mean time spent in this state per visit (exponential)."""


class MMPPArrivals(Strict):
    """Markov-modulated Poisson process: the rate jumps between states; each visit lasts an
    exponential time, then the next state is drawn from ``transitions``. Starts in state 0."""

    kind: Literal["mmpp"] = "mmpp"
    states: list[MMPPState] = Field(min_length=2)
    """The states (rate, mean visit length)."""
    transitions: list[list[float]] | None = None
    """Row-stochastic jump probabilities between states (diagonal 0); default: uniform over the
    other states."""

    @model_validator(mode="after")
    def _check(self) -> MMPPArrivals:
        n = len(self.states)
        if all(s.rate == 0 for s in self.states):
            raise ValueError("every state has rate 0; give at least one state a positive rate")
        if self.transitions is not None:
            if len(self.transitions) != n or any(len(r) != n for r in self.transitions):
                raise ValueError(f"transitions must be a {n}×{n} matrix (one row per state)")
            for i, row in enumerate(self.transitions):
                if any(p < 0 for p in row) or row[i] != 0 or not math.isclose(sum(row), 1.0,
                                                                              abs_tol=1e-6):
                    raise ValueError(f"transitions row {i} must be non-negative, 0 on the "
                                     f"diagonal and sum to 1 (got {row})")
        return self


class DiurnalArrivals(Strict):
    """A daily profile: the rate follows a sinusoid or a piecewise-linear 24-hour table, cyclically.
    Arrivals are a renewal process of coefficient of variation ``cv`` run on the profile's clock
    (a time change: cv = 1 gives a non-homogeneous Poisson process)."""

    kind: Literal["diurnal"] = "diurnal"
    rate: float | None = Field(default=None, gt=0, le=MAX_RATE)
    """Mean requests per second over a day. With ``hourly`` it rescales the table to this mean;
    None: the ``hourly`` values are absolute rates (required for the sinusoid)."""
    amplitude: float = Field(default=0.5, ge=0, le=1)
    """Sinusoid: peak-to-mean swing as a fraction of the mean (rate × (1 ± amplitude))."""
    peak_hour: float = Field(default=14.0, ge=0, lt=24)
    """Sinusoid: hour of day of the peak."""
    hourly: list[float] | None = Field(default=None, min_length=2)
    """Table: rates (or relative weights, see ``rate``) at evenly spaced points over the day (24 =
    one per hour, at hh:00), linear in between and wrapping from the last point to the first."""
    period_s: float = Field(default=86_400.0, gt=0, le=MAX_SECONDS)
    """Simulated seconds per day: 86400 is real time; 3600 plays a whole day in an hour
    (time-scaling keeps the profile's shape, multiplies rates by 86400 / period_s)."""
    start_hour: float = Field(default=0.0, ge=0, lt=24)
    """Hour of day at simulated time 0."""
    cv: float = Field(default=1.0, ge=0.01, le=MAX_CV)
    """Burstiness on the profile's clock (Gamma renewal; 1 = Poisson)."""

    @model_validator(mode="after")
    def _check(self) -> DiurnalArrivals:
        if self.hourly is None and self.rate is None:
            raise ValueError("set rate (the daily mean) for the sinusoid, or give an hourly table")
        if self.hourly is not None:
            if any(v < 0 for v in self.hourly) or not any(v > 0 for v in self.hourly):
                raise ValueError("hourly values must be >= 0 with at least one > 0")
            if "amplitude" in self.model_fields_set or "peak_hour" in self.model_fields_set:
                raise ValueError("amplitude/peak_hour shape the sinusoid and have no effect with "
                                 "an hourly table; remove them")
        return self


class RateStep(Strict):
    """From ``at_s`` on, the rate is ``rate``."""

    at_s: float = Field(ge=0, le=MAX_SECONDS)
    """Simulated time the step takes effect."""
    rate: float = Field(ge=0, le=MAX_RATE)
    """Requests per second from then on."""


class StepsArrivals(Strict):
    """A rate that jumps at given times (autoscaling what-ifs: "traffic triples at t = 600 s").
    Renewal of coefficient of variation ``cv`` on the rate's clock (1 = Poisson)."""

    kind: Literal["steps"] = "steps"
    steps: list[RateStep] = Field(min_length=1)
    """The steps in time order; the first at 0."""
    cv: float = Field(default=1.0, ge=0.01, le=MAX_CV)
    """Burstiness (Gamma renewal on the rate's clock; 1 = Poisson)."""

    @model_validator(mode="after")
    def _check(self) -> StepsArrivals:
        if self.steps[0].at_s != 0:
            raise ValueError("the first step must be at_s: 0 (the rate from the start)")
        times = [s.at_s for s in self.steps]
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError(f"steps must be in increasing at_s order (got {times})")
        if self.steps[-1].rate == 0 and len(self.steps) == 1:
            raise ValueError("a single step of rate 0 sends nothing")
        return self


class RampArrivals(Strict):
    """A rate held at ``from_rate``, ramped linearly to ``to_rate`` over ``duration_s`` starting at
    ``start_s``, then held. Renewal of coefficient of variation ``cv`` on the rate's clock."""

    kind: Literal["ramp"] = "ramp"
    from_rate: float = Field(ge=0, le=MAX_RATE)
    """Requests per second before the ramp."""
    to_rate: float = Field(gt=0, le=MAX_RATE)
    """Requests per second after the ramp."""
    start_s: float = Field(default=0.0, ge=0, le=MAX_SECONDS)
    """When the ramp starts."""
    duration_s: float = Field(gt=0, le=MAX_SECONDS)
    """How long the ramp lasts."""
    cv: float = Field(default=1.0, ge=0.01, le=MAX_CV)
    """Burstiness (Gamma renewal on the rate's clock; 1 = Poisson)."""


class FittedArrivals(Strict):
    """A real trace's arrival process rebuilt from its shipped fit (``workloads/arrivals/<name>.yaml``:
    the per-minute rate profile and the burstiness within it), so it runs without the raw trace:
    a Gamma renewal process on the profile's clock, the profile repeating after its end."""

    kind: Literal["fitted"] = "fitted"
    name: str
    """Fit name: ``azure-conv-2023``, ``azure-code-2023``, ``mooncake-conversation``."""
    rate: float | None = Field(default=None, gt=0, le=MAX_RATE)
    """Mean requests per second; None: the trace's. Scales the whole profile."""
    profile: bool = True
    """Follow the trace's per-minute rate profile; false: a stationary process at the mean rate."""
    cv: float | None = Field(default=None, ge=0.01, le=MAX_CV)
    """Burstiness on the profile's clock; None: the fitted value."""
    time_scale: float = Field(default=1.0, gt=0, le=MAX_TIME_SCALE)
    """Play the profile this many times faster (6 plays an hour's profile in 10 minutes, with six
    times the rate unless ``rate`` is set)."""


class TraceArrivals(Strict):
    """Replay a real trace: its timestamps, and by default its lengths and prefix blocks.

    Built-in traces (``name``) are read from the shared data root (``$SERVESIM_DATA_DIR``, else
    ``../shared/data``); a user's file (``file``) uses the generic CSV/JSONL format of
    :mod:`simulator.workload.traces` (or the Azure or Mooncake layout). Each request keeps its
    trace order."""

    kind: Literal["trace"] = "trace"
    name: Literal["azure-conv-2023", "azure-code-2023", "mooncake-conversation"] | None = None
    """Built-in trace."""
    file: str | None = None
    """A trace file of your own (relative paths are taken from the scenario file's folder)."""
    format: Literal["auto", "generic", "azure", "mooncake"] = "auto"
    """Layout of ``file``: ``generic`` (timestamp, input_tokens, output_tokens[, hash_ids, tenant,
    priority]), ``azure`` (TIMESTAMP, ContextTokens, GeneratedTokens), ``mooncake`` (JSONL with
    timestamp in ms, input_length, output_length, hash_ids); ``auto`` picks from the header."""
    start_s: float = Field(default=0.0, ge=0, le=MAX_SECONDS)
    """Replay from this many seconds into the trace."""
    end_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    """Replay up to this many seconds into the trace (None: to its end)."""
    time_scale: float = Field(default=1.0, gt=0, le=MAX_TIME_SCALE)
    """Divide timestamps by this (6: play an hour in 10 minutes). Every gap shrinks by the same
    factor: the rate is multiplied by it and every inter-arrival statistic that is scale-free (CV,
    order, burst shapes) is kept."""
    rate_scale: float = Field(default=1.0, gt=0, le=MAX_RATE_SCALE)
    """Multiply the traffic by this over the same span (see ``rate_method``)."""
    rate_method: Literal["superpose", "tile"] = "superpose"
    """How ``rate_scale`` is applied. ``superpose``: k independent copies of the trace, each
    circularly shifted by a random offset (a fractional k adds one thinned copy; k < 1 thins):
    more users behaving alike — keeps the rate profile's mean, the length mix and the variance-to-
    mean ratio of counts, while the inter-arrival CV moves towards 1 (aggregation smooths, as
    real aggregation does). ``tile``: play the trace k times faster, k times in a row (k < 1: the
    first k of it, k times slower): keeps the inter-arrival distribution and its CV exactly, but
    repeats (or truncates) the slow rate profile."""
    spread_ties: bool = False
    """Spread requests with the same timestamp evenly up to the next distinct timestamp, keeping
    their order (Mooncake's timestamps are rounded to 3 s, so ~10 requests share each)."""
    lengths: bool = True
    """Use the trace's input/output lengths; false: only its timestamps, with lengths from
    input_len/output_len."""
    prefixes: bool = True
    """Turn the trace's ``hash_ids`` into shared prefix blocks of the KV cache (if it has them)."""
    hash_block_tokens: int = Field(default=512, ge=1, le=MAX_TOKENS)
    """Tokens per ``hash_ids`` block (Mooncake: 512)."""

    @model_validator(mode="after")
    def _check(self) -> TraceArrivals:
        if (self.name is None) == (self.file is None):
            raise ValueError("set exactly one of name (a built-in trace) or file (your own)")
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")
        return self


class ClosedLoopArrivals(Strict):
    """Closed loop: N clients, each sends its next request when the previous one completes
    (vLLM benchmark's ``--max-concurrency`` with infinite rate)."""

    kind: Literal["closed_loop"] = "closed_loop"
    concurrency: int = Field(ge=1, le=MAX_REQUESTS)
    """Number of clients."""
    think_time_s: float = Field(default=0.0, ge=0, le=MAX_SECONDS)
    """Pause between a response and the client's next request."""
    ramp_up_s: float = Field(default=0.0, ge=0, le=MAX_SECONDS)
    """Clients start one after another, evenly over this many seconds (client i of N at
    i × ramp_up_s / N), as a load tool ramping its users does; 0: all start at t = 0. Identical
    requests started together stay in lock-step (they prefill together, decode together and
    finish in the same step, every wave) — the pessimistic end for TTFT; a ramp of one request
    cycle (TTFT + (output − 1) × TPOT) spreads them evenly — the optimistic end."""
    warmup_requests: int = Field(default=0, ge=0, le=MAX_REQUESTS)
    """A warm-up phase first, as ``aiperf profile --warmup-request-count`` runs it:
    the clients send this many requests, the tool waits until every warm-up response is back, then
    the measured phase (``num_requests``) starts with all clients at once. Warm-up requests are
    simulated and conserved but left out of every latency and throughput statistic (the measured
    window starts when the measured phase does, as ``metrics.warmup_s`` would)."""


class OfflineArrivals(Strict):
    """Offline batch: every request arrives at t = 0 (vLLM's offline throughput benchmark)."""

    kind: Literal["offline"] = "offline"


Arrivals = Annotated[PoissonArrivals | GammaArrivals | WeibullArrivals | OnOffArrivals
                     | MMPPArrivals | DiurnalArrivals | StepsArrivals | RampArrivals
                     | FittedArrivals | TraceArrivals | ClosedLoopArrivals | OfflineArrivals,
                     Field(discriminator="kind")]

OPEN_LOOP_KINDS = ("poisson", "gamma", "weibull", "on_off", "mmpp", "diurnal", "steps", "ramp",
                   "fitted")


# --------------------------------------------------------------------------------------------
# Sessions, tenants, the workload
# --------------------------------------------------------------------------------------------


class SessionSpec(Strict):
    """Multi-turn conversations: the arrival process gives each session's start; turn k's prompt is
    the system prompt + every earlier turn's input and output + a new input, so the earlier context
    is a shared prefix (prefix caching hits it). A session ends early when its next turn would not
    fit ``max_model_len``."""

    turns: Literal["geometric", "fixed"] = "geometric"
    """Number of turns: ``geometric`` with mean ``turns_mean`` (at least 1), or exactly
    ``turns_mean`` (rounded)."""
    turns_mean: float = Field(default=4.0, ge=1, le=MAX_TURNS)
    """Mean turns per session."""
    turns_max: int = Field(default=64, ge=1, le=MAX_TURNS)
    """Cap on turns per session."""
    think_time_s: float = Field(default=30.0, ge=0, le=MAX_SECONDS)
    """Mean pause between a response and the user's next turn."""
    think_time: Literal["exponential", "fixed"] = "exponential"
    """Distribution of the pause."""
    followup_input_len: Length | None = None
    """New tokens the user adds in turns after the first; None: drawn like input_len."""


class TenantSpec(Strict):
    """One sender of traffic (a team, a product, a customer) with its own share or arrival process,
    lengths, priority, SLO class and API key. Unset lengths, system prompt and sessions come from
    the workload."""

    name: str = Field(min_length=1)
    """Tenant name (reported on every request)."""
    api_key: str | None = None
    """API key its requests carry (what the gateway maps to the tenant)."""
    weight: float | None = Field(default=None, gt=0, le=1e9)
    """Share of the workload's ``arrival`` process (normalised over the tenants that use it).
    Tenants with neither weight nor arrival get weight 1."""
    arrival: Arrivals | None = None
    """Its own arrival process (instead of a share of the workload's)."""
    input_len: Length | None = None
    """Prompt tokens; None: the workload's."""
    output_len: Length | None = None
    """Generated tokens; None: the workload's."""
    length_correlation: float | None = Field(default=None, ge=-1, le=1)
    """Rank correlation of (input, output); None: the workload's."""
    system_prompt_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    """Its own shared system prompt (not shared with other tenants); None: the workload's."""
    sessions: SessionSpec | None = None
    """Multi-turn sessions; None: the workload's."""
    priority: int = Field(default=0, ge=-2**31, lt=2**31)
    """Scheduling priority of its requests (lower = served first, vLLM's convention)."""
    slo_class: str = "default"
    """SLO class label its requests carry (for per-class targets and results)."""
    num_requests: int | None = Field(default=None, ge=1, le=MAX_REQUESTS)
    """Cap on requests from its own arrival process (required for its own closed loop unless the
    workload has duration_s)."""

    @model_validator(mode="after")
    def _check(self) -> TenantSpec:
        if self.weight is not None and self.arrival is not None:
            raise ValueError("give a tenant either weight (a share of workload.arrival) or its own "
                             "arrival, not both")
        if self.num_requests is not None and self.arrival is None:
            raise ValueError("num_requests caps a tenant's own arrival process; with a weight, "
                             "cap the workload's num_requests instead")
        return self


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: nested mappings merge unless their ``kind`` differs."""
    out = dict(base)
    for k, v in over.items():
        b = out.get(k)
        if isinstance(v, dict) and isinstance(b, dict) and v.get("kind", b.get("kind")) == b.get("kind"):
            out[k] = _deep_merge(b, v)
        else:
            out[k] = v
    return out


def named_workload_path(name: str) -> Path:
    """``workloads/<name>.yaml`` (a ConfigError listing the known names if absent)."""
    # NOTE: a name is a name, never a path: only these characters, so nothing outside
    # workloads/ is read and no overlong file name reaches the OS.
    if not re.fullmatch(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{NAME_CHARS - 1}}}", name):
        raise ConfigError(f"workload.name: {clip(name, 40)} is not a workload name (letters, "
                          f"digits, '.', '_', '-', at most {NAME_CHARS} characters; `servesim "
                          f"workload list` shows them); for a file of your own use workload.spec")
    path = data_root("workloads") / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"unknown named workload '{name}'; known: {', '.join(known)} "
                          f"(or give spec: path/to/workload.yaml)")
    return path


def workload_spec_path(spec: str) -> Path:
    """A workload spec path: absolute, from the working directory, or from the repository top."""
    p = Path(spec).expanduser()
    for cand in (p, data_root("workloads").parent / p):
        try:
            if cand.is_file():
                return cand
        except (OSError, ValueError) as e:  # too long a name, a NUL byte
            raise ConfigError(f"workload.spec: cannot use {clip(spec, 60)} as a file path "
                              f"({getattr(e, 'strerror', None) or e})") from None
    raise ConfigError(f"workload spec {spec} not found (looked in the working directory and "
                      f"{data_root('workloads').parent})")


def load_workload_file(path: Path) -> dict[str, Any]:
    """A workload spec file as a mapping, checked against WorkloadConfig (errors name its line)."""
    data, _ = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of workload fields")
    if "name" in data or "spec" in data:
        raise ConfigError(f"{path}: a workload spec file cannot itself refer to a named workload "
                          f"(remove name/spec; the file name is the workload's name)")
    load_yaml_model(path, WorkloadConfig)  # line-numbered errors in the file itself
    return data


class WorkloadConfig(Strict):
    """The traffic: when requests arrive, how long their prompts and outputs are, what they share
    and who sends them."""

    name: str | None = None
    """Start from the named workload ``workloads/<name>.yaml`` (``servesim workload list``); the
    other fields given here override it."""
    spec: str | None = None
    """Start from a workload spec file of your own (same fields as this section)."""
    description: str = ""
    """What this traffic represents."""
    arrival: Arrivals = PoissonArrivals(rate=10.0)
    """Arrival process (of requests, or of session starts with ``sessions``)."""
    input_len: Length = TableLength(name="sharegpt-vllm-bench", max=None)
    """Prompt tokens (excluding the shared system prompt)."""
    output_len: Length = TableLength(name="sharegpt-vllm-bench", max=None)
    """Generated tokens. For ``table`` lengths with the same name as input_len, the (input, output)
    pair is drawn jointly from the table's copula, keeping their correlation."""
    length_correlation: float | None = Field(default=None, ge=-1, le=1)
    """Spearman rank correlation of (input, output), imposed through a Gaussian copula on any two
    length distributions; None: the table's own joint draw (same-name tables), row pairs (same
    empirical file) or independent."""
    system_prompt_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    """Tokens of a system prompt shared by every request (exercises prefix caching)."""
    sessions: SessionSpec | None = None
    """Multi-turn sessions (the arrival process starts sessions); None: independent requests."""
    tenants: list[TenantSpec] = Field(default_factory=list, max_length=255)
    """Named tenants (empty: one anonymous sender, tenant ``default``)."""
    overlong: Literal["send", "clip"] = "send"
    """A request whose prompt + output exceeds ``max_model_len``: ``send`` it as drawn (vLLM
    rejects it with HTTP 400), or ``clip`` its output (and prompt) to fit, as a client that sets
    max_tokens to the room left does."""
    num_requests: int | None = Field(default=2000, ge=1, le=MAX_REQUESTS)
    """Requests to send (session turns count one each); None to send until ``duration_s`` (or, for
    a trace, until its end)."""
    duration_s: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    """Stop sending after this many simulated seconds (and stop the run there)."""
    max_concurrency: int | None = Field(default=None, ge=1, le=MAX_REQUESTS)
    """At most this many requests in flight from the open-loop arrival process, as
    ``vllm bench serve --max-concurrency`` (and benchmark_serving.py) enforce with a semaphore:
    a request whose send time comes while all are busy waits at the client, in order, and is sent
    when one ends; its latencies count from when it is sent. With ``arrival.kind: offline`` it is
    ``--request-rate inf --max-concurrency N``. None: no cap. (A closed loop has its own
    ``concurrency``.)"""

    @model_validator(mode="before")
    @classmethod
    def _resolve_named(cls, data: Any) -> Any:
        if not isinstance(data, dict) or (data.get("name") is None and data.get("spec") is None):
            return data
        if data.get("name") is not None and data.get("spec") is not None:
            raise ValueError("give name (a shipped workload) or spec (your file), not both")
        for key in ("name", "spec"):
            v = data.get(key)
            if v is not None and not isinstance(v, str):
                what = "a shipped workload's name" if key == "name" else "a spec file's path"
                raise ValueError(f"{key}: expected {what}, not {type(v).__name__} {clip(v, 40)}")
        try:
            path = (named_workload_path(str(data["name"])) if data.get("name") is not None
                    else workload_spec_path(str(data["spec"])))
            base = load_workload_file(path)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return _deep_merge(base, data)

    @model_validator(mode="after")
    def _check(self) -> WorkloadConfig:
        if self.num_requests is None and self.duration_s is None and not (
                isinstance(self.arrival, TraceArrivals) and not self.tenants):
            raise ValueError("set num_requests or duration_s (or both)")
        kinds = [self.arrival.kind] + [t.arrival.kind for t in self.tenants if t.arrival]
        if "offline" in kinds and self.num_requests is None:
            raise ValueError("offline arrivals need num_requests (they all arrive at t = 0)")
        capped = (*OPEN_LOOP_KINDS, "trace", "offline")
        if self.max_concurrency is not None and (
                self.arrival.kind not in capped or self.tenants or self.sessions):
            what = self.arrival.kind + (" with tenants" if self.tenants else "") + (
                " with sessions" if self.sessions else "")
            raise ValueError(f"max_concurrency caps one open-loop arrival process "
                             f"({', '.join(capped)}) without tenants or sessions, not {what}; "
                             f"for a closed loop use arrival.concurrency")
        names = [t.name for t in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError(f"tenant names must be unique (got {names})")
        shares = [t for t in self.tenants if t.arrival is None]
        if self.tenants and not shares and "arrival" in self.model_fields_set:
            raise ValueError("every tenant has its own arrival, so workload.arrival is unused; "
                             "remove it or give some tenants a weight instead")
        streams: list[tuple[str, Any, SessionSpec | None]] = [("", self.arrival, self.sessions)]
        for i, t in enumerate(self.tenants):
            where = f"tenants[{i}]."
            if t.arrival is None:
                streams.append((where, self.arrival, t.sessions))
                continue
            streams.append((where, t.arrival, t.sessions or self.sessions))
            if isinstance(t.arrival, ClosedLoopArrivals) and t.num_requests is None \
                    and self.duration_s is None:
                raise ValueError(f"{where}arrival is a closed loop: set {where}num_requests or "
                                 f"workload.duration_s so it stops")
        for where, arr, sess in streams:
            if sess is not None and isinstance(arr, ClosedLoopArrivals | TraceArrivals):
                raise ValueError(f"{where}sessions need an open-loop arrival process for the "
                                 f"session starts, not {arr.kind}")
        if isinstance(self.arrival, TraceArrivals) and self.arrival.lengths:
            both = {"input_len", "output_len"} & self.model_fields_set
            if both and not self.tenants:
                raise ValueError(f"arrival is a trace that brings its own lengths, so "
                                 f"{'/'.join(sorted(both))} would be ignored; remove them or set "
                                 f"arrival.lengths: false")
        return self
