"""Shipped derived workload statistics (``workloads/<kind>/<name>.yaml``), loaded by name.

What this models: nothing physical — the one way the repository's derived tables (length quantiles,
arrival fits) are found, read safely and checked, with a one-line error listing the known names.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from simulator.errors import ConfigError, clip, safe_load
from simulator.profiles import data_root


@functools.cache
def load_shipped(subdir: str, name: str, field: str, what: str,
                 required: tuple[str, ...]) -> dict[str, Any]:
    """Read ``workloads/<subdir>/<name>.yaml``; ``field`` and ``what`` name it in errors."""
    # NOTE: a name, never a path (nothing outside workloads/ is read, no overlong file name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise ConfigError(f"{field}: {clip(name, 40)} is not a {what} name (letters, digits, '.', "
                          f"'_', '-', at most 100 characters)")
    path = data_root("workloads") / subdir / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"{field}: unknown {what} '{name}'; known: {', '.join(known)}")
    with path.open("rb") as fh:
        data = safe_load(fh.read(), str(path))
    if not isinstance(data, dict) or any(k not in data for k in required):
        raise ConfigError(f"{path}: not a {what} (needs {' and '.join(required)})")
    return data
