"""vLLM's front end: the API server process(es) in front of one engine core.

What this models: ``vllm serve`` runs the OpenAI-compatible HTTP server (``vllm/entrypoints/openai``)
and ``AsyncLLM`` in one asyncio process per ``--api-server-count``, and the engine core (scheduler +
GPU workers) in another. A request's path through it, and what each stage costs in CPU time:

* **Input** (``OpenAIServing`` → ``AsyncLLM.add_request``): parse the HTTP body, render the chat
  template, tokenise the prompt (on the server's tokenizer worker thread), build the
  ``EngineCoreRequest`` and send it to the engine core over ZMQ. Cost ``request_s +
  tokenize_s_per_token × prompt tokens``, served first come first served by the request's API
  server process (the tokenizer thread is one thread: a burst of prompts is tokenised one after
  another). The engine core drains its input queue between steps, so a request that lands during a
  step is scheduled in the next one (the replica's loop already does that).
* **Output** (``AsyncLLM.output_handler`` → ``OutputProcessor.process_outputs`` → the request's
  streaming generator): every step the engine core sends one output per running request; the API
  server detokenises each new token incrementally and writes one SSE chunk per request, one request
  after the other. Output ``k`` of a step (in the engine's order) reaches its client at
  ``start + k × output_s`` where ``start`` is the step's end, or later if the process is still busy
  with the previous steps' outputs (a saturated front end delays every stream).

What the client sees moves with it: the first token (TTFT) and the end of the response (when a
closed-loop client sends its next request, and when the router counts the request done) are
delivered through the output lane; the engine frees the request's KV blocks at the step's end as
before. The serialisation spreads a wave of closed-loop clients that the engine finished in the
same step: their next requests reach the engine a few hundred microseconds to milliseconds apart,
and where that spread crosses a step boundary the wave splits. With these priors it splits a wave
once and then settles into a repeating pattern; it does not by itself reproduce how far real
benchmark clients drift apart (``simulator/calibrate/validate_silicon.py``).

Configured by ``engine.api_server`` (:class:`simulator.cluster.spec.APIServerConfig`; kept there so
that this module compiles with the engine). Coefficients (provenance in the docstrings of
``spec.TOKENIZE_S_PER_TOKEN``, ``DETOKENIZE_S_PER_TOKEN``, ``OUTPUT_S_PER_REQUEST`` and
``REQUEST_S``): nothing in ../shared/data isolates API-server CPU time (every end-to-end run folds
it into TTFT and TPOT), so they are priors: the tokenizer and the incremental detokenizer were
measured here with HF ``tokenizers`` (``scripts/measure_frontend.py``);
the per-request and per-output Python overheads are conservative priors. The measurement that would
calibrate them: ``vllm bench serve`` against one ``vllm serve`` at fixed concurrency with
``py-spy record`` on the API server process (its CPU seconds per request and per streamed chunk),
or ``VLLM_LOG_STATS`` with ``--api-server-count 1`` vs 4 at the same load.

Leaves out: HTTP keep-alive and connection setup, the asyncio loop's scheduling jitter, GIL contention
between the tokenizer thread and the output loop (they are modelled as two independent lanes), and
the engine core's own output serialisation (in the step time's CPU overhead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.cluster.spec import APIServerConfig

class APIServer:
    """The API server processes of one replica: an input lane (tokenizer thread) and an output
    lane (output loop) per process, each first come first served.

    ``admit`` gives the time a request reaches the engine core; ``first_token`` / ``step_end``
    give the times the step's outputs reach their clients. Calls come in time order per lane (the
    replica's steps end in order, even when its fast path runs ahead of the clock)."""

    __slots__ = (
        "_in_busy",
        "_next",
        "_step_base",
        "_step_k",
        "_step_t",
        "out_busy",
        "output_s",
        "procs",
        "request_s",
        "tokenize_s",
    )

    def __init__(self, cfg: APIServerConfig) -> None:
        self.request_s = cfg.request_s
        self.tokenize_s = cfg.tokenize_s_per_token
        self.procs = cfg.api_server_count
        # NOTE: a step's outputs are spread over the processes round robin, so one process
        # handles 1/procs of them: the output lane is costed per output as output_s / procs.
        self.output_s = cfg.output_s / self.procs
        self._in_busy = [0.0] * self.procs
        self._next = 0
        self.out_busy = 0.0
        """When the output lane is done with the steps so far (the decode fast path advances it
        over its runs of decode steps as :meth:`step_end` would, step by step)."""
        self._step_t = -1.0
        self._step_base = 0.0
        self._step_k = 0

    def admit(self, now: float, prompt_tokens: int) -> float:
        """A request arrives at ``now``: when its tokenised request reaches the engine core."""
        p = self._next
        self._next = (p + 1) % self.procs
        busy = self._in_busy
        start = busy[p] if busy[p] > now else now
        done = start + self.request_s + self.tokenize_s * prompt_tokens
        busy[p] = done
        return done

    def _base(self, now: float) -> float:
        if now != self._step_t:
            self._step_t = now
            self._step_base = self.out_busy if self.out_busy > now else now
            self._step_k = 0
        return self._step_base

    def first_token(self, now: float) -> float:
        """A request's first token left the engine in the step ending at ``now``: when it reaches
        the client (its output's turn in the step's output processing)."""
        base = self._base(now)
        self._step_k += 1
        return base + self._step_k * self.output_s

    def step_end(self, now: float, n_outputs: int, finished: int) -> tuple[float, float]:
        """The step ending at ``now`` produced ``n_outputs`` outputs: occupy the output lane with
        them. Returns (base, gap): finished request ``j`` of the step (0-based) reaches its client
        at ``base + (j + 1) × gap`` (``base`` is already past the step's first tokens)."""
        base = self._base(now)
        gap = self.output_s
        self.out_busy = base + max(n_outputs, self._step_k + finished) * gap
        return base + self._step_k * gap, gap
