"""Shipped derived workload statistics (``workloads/<kind>/<name>.yaml``), loaded by name.

What this models: nothing physical — the one way the repository's derived tables (length quantiles,
arrival fits) are found, read safely and checked, with a one-line error listing the known names.
"""

from __future__ import annotations

import functools
from typing import Any

from simulator.errors import ConfigError, safe_load
from simulator.profiles import data_root


@functools.cache
def load_shipped(subdir: str, name: str, field: str, what: str,
                 required: tuple[str, ...]) -> dict[str, Any]:
    """Read ``workloads/<subdir>/<name>.yaml``; ``field`` and ``what`` name it in errors."""
    path = data_root("workloads") / subdir / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"{field}: unknown {what} '{name}'; known: {', '.join(known)}")
    with path.open() as fh:
        data = safe_load(fh)
    if not isinstance(data, dict) or any(k not in data for k in required):
        raise ConfigError(f"{path}: not a {what} (needs {' and '.join(required)})")
    return data
