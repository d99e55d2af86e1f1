"""The PromQL the simulator can evaluate: queries on vLLM's Prometheus metrics as autoscalers send
them (KEDA's ``prometheus`` trigger, a Prometheus adapter rule).

What this mirrors: the handful of query shapes that scale vLLM fleets in practice —

- ``sum(vllm:num_requests_waiting{…})`` / ``avg(…)``, optionally over ``avg_over_time(…[1m])``:
  the gauges ``num_requests_waiting``, ``num_requests_running`` and ``kv_cache_usage_perc``
  (``gpu_cache_usage_perc`` before vLLM 0.10) — summed over the pods or averaged;
- ``sum(vllm:num_requests_running + vllm:num_requests_waiting)`` (or the sum of the two sums): the
  requests in flight, the ``queue`` signal's ``metric: in_flight``;
- ``sum(rate(vllm:generation_tokens_total[1m]))``: output tokens per second;
- ``histogram_quantile(0.9, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))``:
  the fleet's TTFT p90 —

each mapped to a signal of the simulator's metrics pipeline
(:data:`simulator.cluster.autoscale_spec.PodsMetric`) with its aggregation and its range (the
autoscaler's ``window_s``). Label matchers are kept as written and not evaluated (a scenario pool is
one model's replicas). Anything else — arithmetic, other functions, other quantiles, metrics the
pipeline does not export (``prompt_tokens_total``, ``e2e_request_latency_seconds`` …) — is refused
with a line naming the part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from simulator.errors import ConfigError

GAUGES = {"num_requests_waiting": "num_requests_waiting",
          "num_requests_running": "num_requests_running",
          "kv_cache_usage_perc": "kv_cache_usage_perc",
          "gpu_cache_usage_perc": "kv_cache_usage_perc"}
"""vLLM gauge → simulator signal (``gpu_cache_usage_perc`` is the pre-0.10 name)."""
COUNTERS = {"generation_tokens_total": "generation_tokens_per_s",
            "generation_tokens": "generation_tokens_per_s"}
"""vLLM counter (read as a rate) → simulator signal."""
TTFT_HISTOGRAM = "time_to_first_token_seconds"
KNOWN = ("vllm:num_requests_waiting, vllm:num_requests_running, vllm:kv_cache_usage_perc "
         "(vllm:gpu_cache_usage_perc), rate(vllm:generation_tokens_total[…]), "
         "histogram_quantile(0.9, … vllm:time_to_first_token_seconds_bucket …)")


@dataclass(frozen=True)
class Query:
    """A query reduced to what the simulator's autoscaler reads."""

    metric: str
    """Simulator signal (``num_requests_waiting`` … ``time_to_first_token_p90_s``; ``in_flight``:
    running + waiting, the ``queue`` signal's ``metric: in_flight``)."""
    aggregation: Literal["sum", "avg", "quantile"]
    window_s: float | None
    """The range of ``avg_over_time`` / ``rate`` (None: the last scrape)."""
    labels: str = ""


_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?![a-zA-Z_:])|(?P<name>[a-zA-Z_:]"
                    r"[a-zA-Z0-9_:]*)|(?P<sel>\{[^{}]*\})|(?P<range>\[[^\[\]]*\])|(?P<p>[(),])"
                    r"|(?P<op>[-+*/%^]|==|!=|>=|<=|>|<))")


def _tokens(q: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    q = q.strip()
    while pos < len(q):
        m = _TOKEN.match(q, pos)
        if not m or m.end() == pos:
            raise ConfigError(f"query {q!r}: cannot read {q[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def parse_duration(text: str, where: str) -> float:
    """PromQL duration: ``1m``, ``90s``, ``2m30s``, ``1h``, ``500ms``."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if not parts or "".join(a + b for a, b in parts) != text.strip():
        raise ConfigError(f"{where}: range [{text}] is not a PromQL duration (30s, 1m, 2m30s)")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(a) * unit[b] for a, b in parts)


def format_duration(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 60 or seconds % 60 else f"{seconds / 60:g}m"


class _Parser:
    def __init__(self, q: str, where: str) -> None:
        self.q, self.where = q, where
        self.toks = _tokens(q)
        self.i = 0

    def fail(self, part: str, why: str) -> ConfigError:
        return ConfigError(f"{self.where}: query {self.q!r}: {part}: {why}")

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        t = self.peek()
        if t is None or (value is not None and t[1] != value) or (kind is not None and t[0] != kind):
            got = t[1] if t else "the end"
            raise self.fail(got, f"expected {value or kind}")
        self.i += 1
        return t[1]

    def by_clause(self) -> list[str]:
        t = self.peek()
        if t and t[1] in ("by", "without"):
            word = self.take()
            self.take("(")
            labels = []
            while self.peek() and self.peek()[1] != ")":  # type: ignore[index]
                tok = self.take()
                if tok != ",":
                    labels.append(tok)
            self.take(")")
            if word == "without":
                raise self.fail("without (…)", "returns one series per label set; the "
                                "simulator needs one number for the pool")
            return labels
        return []

    def series(self) -> tuple[str, str, float | None, str | None]:
        """metric[{sel}] or FUNC(metric[{sel}][range]) → (metric, labels, window, func)."""
        name = self.take(kind="name")
        if self.peek() and self.peek()[1] == "(":  # type: ignore[index]
            func = name
            if func not in ("avg_over_time", "rate", "irate"):
                raise self.fail(f"{func}(…)", "not a function the simulator evaluates (it reads "
                                "avg_over_time of a gauge or rate of a counter)")
            self.take("(")
            metric = self.take(kind="name")
            labels = self.take(kind="sel") if self.peek() and self.peek()[0] == "sel" else ""  # type: ignore[index]
            rng = self.take(kind="range")
            self.take(")")
            return metric, labels, parse_duration(rng[1:-1], self.where), func
        labels = self.take(kind="sel") if self.peek() and self.peek()[0] == "sel" else ""  # type: ignore[index]
        if self.peek() and self.peek()[0] == "range":  # type: ignore[index]
            raise self.fail(self.peek()[1], "a range vector needs avg_over_time(…) or rate(…)")  # type: ignore[index]
        return name, labels, None, None

    def end(self) -> None:
        t = self.peek()
        if t is not None:
            raise self.fail(t[1], "arithmetic, comparisons and anything after the aggregation are "
                            "not evaluated; scale on the plain aggregate")


def _base(metric: str) -> str:
    for pre in ("vllm:", "vllm_"):
        if metric.startswith(pre):
            return metric[len(pre):]
    return metric


def parse_query(q: str, where: str) -> Query:
    """Reduce a PromQL query to a :class:`Query`, or refuse it naming the part."""
    p = _Parser(q, where)
    first = p.take(kind="name")
    if first == "histogram_quantile":
        p.take("(")
        qv = float(p.take(kind="num"))
        p.take(",")
        inner = p.take(kind="name")
        if inner != "sum":
            raise p.fail(f"{inner}(…)", "the buckets must be summed over the pods: sum by (le) (…)")
        labels_by = p.by_clause()
        p.take("(")
        metric, labels, window, func = p.series()
        p.take(")")
        labels_by += p.by_clause()
        p.take(")")
        p.end()
        base = _base(metric)
        if not base.endswith("_bucket"):
            raise p.fail(metric, "histogram_quantile needs a _bucket series")
        base = base[: -len("_bucket")]
        if base != TTFT_HISTOGRAM:
            raise p.fail(metric, f"the simulator's latency signal is {TTFT_HISTOGRAM}; known: "
                         f"{KNOWN}")
        if func not in ("rate", "irate") or window is None:
            raise p.fail(metric, "bucket counters need rate(…[window])")
        if set(labels_by) != {"le"}:
            raise p.fail(f"by ({', '.join(labels_by)})", "group by le only (one quantile for the "
                         "pool)")
        if abs(qv - 0.9) > 1e-9:
            raise p.fail(f"quantile {qv:g}", "the simulator's TTFT signal is the p90 "
                         "(time_to_first_token_p90_s); use 0.9")
        return Query("time_to_first_token_p90_s", "quantile", window, labels)
    if first not in ("sum", "avg"):
        if (p.peek() and p.peek()[1] == "(") or first.startswith("vllm"):  # type: ignore[index]
            what = f"{first}(…)" if not first.startswith("vllm") else first
            raise ConfigError(f"{where}: query {q!r}: {what}: aggregate over the pods with sum(…) "
                              f"or avg(…) (the autoscaler needs one number)")
        raise p.fail(first, f"not a metric the simulator exports; known: {KNOWN}")
    by = p.by_clause()
    p.take("(")
    metric, labels, window, func = p.series()
    parts = [(metric, window, func)]
    if p.peek() == ("op", "+"):  # sum(running + waiting)
        p.take("+")
        m2, _, w2, f2 = p.series()
        parts.append((m2, w2, f2))
    p.take(")")
    by += p.by_clause()
    if p.peek() == ("op", "+") and first == "sum" and len(parts) == 1:  # sum(running) + sum(waiting)
        p.take("+")
        p.take("sum")
        p.take("(")
        m2, _, w2, f2 = p.series()
        p.take(")")
        parts.append((m2, w2, f2))
    p.end()
    if by:
        raise p.fail(f"by ({', '.join(by)})", "returns one series per label set; the simulator "
                     "needs one number for the pool")
    if len(parts) == 2:
        names = sorted(GAUGES.get(_base(m), m) for m, _, _ in parts)
        if first != "sum" or names != ["num_requests_running", "num_requests_waiting"]:
            raise p.fail(" + ".join(m for m, _, _ in parts), "the one sum the simulator evaluates "
                         "is running + waiting summed over the pods (the in_flight queue)")
        if parts[0][1] != parts[1][1] or any(f in ("rate", "irate") for _, _, f in parts):
            raise p.fail(" + ".join(m for m, _, _ in parts), "both gauges over the same "
                         "avg_over_time range")
        return Query("in_flight", "sum", window, labels)
    base = _base(metric)
    agg: Literal["sum", "avg"] = "sum" if first == "sum" else "avg"
    if base in GAUGES:
        if func in ("rate", "irate"):
            raise p.fail(f"{func}({metric})", "rate() of a gauge; use avg_over_time(…)")
        return Query(GAUGES[base], agg, window, labels)
    if base in COUNTERS:
        if func not in ("rate", "irate"):
            raise p.fail(metric, "a counter is read as rate(…[window])")
        return Query(COUNTERS[base], agg, window, labels)
    if base == "num_requests_swapped":
        raise p.fail(metric, "V0's swap queue is not modelled (preemption recomputes)")
    raise p.fail(metric, f"not a metric the simulator's autoscaler reads; known: {KNOWN}")


_VLLM_NAME = {"num_requests_waiting": "vllm:num_requests_waiting",
              "num_requests_running": "vllm:num_requests_running",
              "kv_cache_usage_perc": "vllm:kv_cache_usage_perc"}


def format_query(metric: str, aggregation: Literal["sum", "avg"], window_s: float,
                 labels: str = "") -> str:
    """The query :func:`parse_query` reads back as (metric, aggregation, window)."""
    w = format_duration(window_s)
    if metric == "in_flight":
        return (f"sum(avg_over_time(vllm:num_requests_running{labels}[{w}]) + "
                f"avg_over_time(vllm:num_requests_waiting{labels}[{w}]))")
    if metric == "time_to_first_token_p90_s":
        return (f"histogram_quantile(0.9, sum by (le) "
                f"(rate(vllm:{TTFT_HISTOGRAM}_bucket{labels}[{w}])))")
    if metric == "generation_tokens_per_s":
        return f"{aggregation}(rate(vllm:generation_tokens_total{labels}[{w}]))"
    return f"{aggregation}(avg_over_time({_VLLM_NAME[metric]}{labels}[{w}]))"
