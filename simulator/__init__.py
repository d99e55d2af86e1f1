"""servesim: a capacity-planning simulator for LLM serving fleets.

Notebook entry points::

    from simulator import load_scenario, simulate
    res = simulate(load_scenario("scenarios/chat-h100.yaml"))
    res.requests   # one row per request
    res.summary    # same content as summary.json
"""

__version__ = "0.1.0"

from simulator import _native

_native.activate()  # before any compiled module is imported (see simulator._native)

from simulator.config import Scenario, load_scenario  # noqa: E402
from simulator.run import Results, simulate  # noqa: E402

__all__ = ["Results", "Scenario", "__version__", "load_scenario", "simulate"]
