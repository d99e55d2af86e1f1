"""The compiled engine: which modules are built with mypyc, and whether the built ones are used.

What this models: nothing of the serving path — it is how the simulator runs fast. The modules in
:data:`MODULES` (the engine loop, scheduler, KV cache, step-time model, fleet, router, gateway,
clients and recorder: everything a simulated request passes through) are plain, typed Python. The
install (``pip install .``; the build hook ``hatch_build.py`` at the repository root) also compiles
them with mypyc into C extensions next to their sources, about 2.5× as fast and with identical
results (``tests/test_native.py`` runs both and compares the frames bit for bit). Python imports an
extension before a source file of the same name, so the compiled modules are used whenever they are
there and current.

When they are not used, the simulator runs the sources — the same results, slower:
- ``SERVESIM_PURE=1`` in the environment (to compare, or to debug with a Python debugger);
- nothing was compiled (``SERVESIM_COMPILE=0`` at install, no C compiler, or a source checkout that
  was never installed); when the install tried and failed, ``_native.json`` records its one-line
  reason and the reason below quotes it (``servesim version`` prints it);
- a source changed since it was compiled (the build records each source's SHA-256 in
  ``_native.json``): every compiled module is then set aside, all or none, since compiled modules
  call one another directly and cannot be mixed with a newer source. Reinstall to compile again.

:func:`status` says which it is; ``summary["sim"]["native"]`` records it for every run.

What compiling asks of the code (all plain Python still): a compiled class cannot subclass a Python
one (the WAITING queue, a ``deque``, lives in :mod:`simulator.engine.queues`); values must match
their annotations (an ``int`` stored in a ``float`` field becomes a float — so the simulation
clock is a float from the start); constructors of per-request objects are written out (the one
``@dataclass`` generates runs as Python); the simulation runs on :class:`simulator.simenv.Environment`
(SimPy's, compiled: its clock, heap and event counter are fields the compiled modules read
directly), whose clock they read as ``env._now``, the field its ``now`` property returns.
Work that is not per request (summaries over pandas frames) stays out of these modules.

This module imports only the standard library: the build hook loads it by path before anything is
installed.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

MODULES: tuple[str, ...] = (
    "simulator.simenv",
    "simulator.engine.request",
    "simulator.engine.kv_cache",
    "simulator.engine.scheduler",
    "simulator.engine.step_time",
    "simulator.cluster.request",
    "simulator.cluster.replica",
    "simulator.cluster.frontend",
    "simulator.cluster.fast_path",
    "simulator.cluster.router",
    "simulator.cluster.gateway",
    "simulator.cluster.client",
    "simulator.cluster.fleet",
    "simulator.cluster.ledger",
    "simulator.metrics.recorder",
    "simulator.workload.arrivals",
    "simulator.workload.generator",
)
"""Modules compiled by the install, as dotted names."""

GROUP = "simulator._engine"
"""mypyc's shared library for them (``simulator/_engine__mypyc*.so``)."""

RECORD = "_native.json"
"""Written by the build beside this file: the SHA-256 of each compiled source, and the mypy and
Python versions that compiled them."""

PURE_ENV = "SERVESIM_PURE"

BUILD_MYPY_CONFIG = """\
# Written by hatch_build.py: how the install's mypyc reads the engine (simulator/_native.py).
# The same whatever is installed where pip builds (its isolated build environment has only the
# build hook's dependencies; another environment may have any stubs): mypy sees the standard
# library and this project only, third-party packages are Any, and only the compiled modules'
# own type errors stop the build. `mypy simulator` (pyproject.toml) is the strict check.
[mypy]
no_site_packages = True
ignore_missing_imports = True
follow_imports = silent
warn_unused_ignores = False
check_untyped_defs = True
"""
"""The mypy configuration the install compiles with (hatch_build.py writes it to
``build/mypyc/mypy.ini``)."""


def toolchain_problem() -> str | None:
    """Why this Python cannot build C extensions (no compiler, no headers), or None if it can."""
    import shlex
    import shutil
    import sysconfig

    if os.name == "nt":  # MSVC is found by setuptools itself
        return None
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    exe = (shlex.split(cc) or ["cc"])[0]
    if shutil.which(exe) is None:
        return f"no C compiler: `{exe}` (the compiler this Python builds extensions with) is not found"
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not header.exists():
        return f"no Python C headers: {header} is missing (the python3-dev package)"
    return None


def source_path(package_root: Path, module: str) -> Path:
    """``simulator.engine.request`` → ``<package_root>/engine/request.py``."""
    parts = module.split(".")
    return package_root.joinpath(*parts[1:]).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extension_path(package_root: Path, module: str) -> Path | None:
    """The compiled extension of ``module`` beside its source, if there is one for this Python."""
    src = source_path(package_root, module)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        ext = src.with_suffix(suffix)
        if ext.exists():
            return ext
    return None


def check(package_root: Path, modules: Sequence[str] = MODULES,
          environ: dict[str, str] | None = None) -> tuple[bool, str]:
    """Whether the compiled modules under ``package_root`` can be used, and why (one line)."""
    env = os.environ if environ is None else environ
    if env.get(PURE_ENV, "") not in ("", "0"):
        return False, f"pure Python ({PURE_ENV}={env[PURE_ENV]})"
    have = [m for m in modules if extension_path(package_root, m) is not None]
    record = package_root / RECORD
    if not have:
        try:
            built = json.loads(record.read_text())
        except (OSError, ValueError):
            built = {}
        if isinstance(built, dict) and built.get("failed"):
            return False, (f"pure Python (not compiled at install: {built['failed']}; fix that, "
                           f"then `pip install .` again)")
        if isinstance(built, dict) and built.get("skipped"):
            return False, f"pure Python (not compiled: {built['skipped']} at install)"
        return False, ("pure Python (not compiled: install with `pip install .`, which compiles it "
                       "with a C compiler)")
    if len(have) < len(modules):
        missing = sorted(set(modules) - set(have))
        return False, f"pure Python (compiled build incomplete: {missing[0]} missing; reinstall)"
    try:
        built = json.loads(record.read_text())["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return False, f"pure Python (no valid build record {record}; reinstall)"
    for m in modules:
        if built.get(m) != digest(source_path(package_root, m)):
            return False, (f"pure Python ({source_path(package_root, m).name} changed since it "
                           f"was compiled; reinstall with `pip install .` to compile it again)")
    return True, "compiled (mypyc)"


class _SourceFinder:
    """Import the compiled modules from their ``.py`` sources (a meta path finder)."""

    def __init__(self, package_root: Path, modules: Sequence[str]) -> None:
        self.root = package_root
        self.modules = frozenset(modules)

    def find_spec(self, name: str, path: Any = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name not in self.modules:
            return None
        return importlib.util.spec_from_file_location(name, source_path(self.root, name))


_STATE: dict[str, Any] = {}


def activate(package_root: Path | None = None) -> None:
    """Decide once, before any of :data:`MODULES` is imported, whether the compiled ones are used;
    if not, import them from source."""
    if _STATE:
        return
    root = Path(__file__).resolve().parent if package_root is None else package_root
    ok, why = check(root)
    _STATE.update(compiled=ok, reason=why)
    if not ok:
        sys.meta_path.insert(0, _SourceFinder(root, MODULES))


def status() -> dict[str, Any]:
    """``{"compiled": bool, "reason": str}`` for this process; also what the modules in use are."""
    activate()
    loaded = [sys.modules[m].__file__ or "" for m in MODULES if m in sys.modules]
    native = [f for f in loaded if not f.endswith(".py")]
    return {**_STATE, "loaded_compiled": len(native), "loaded": len(loaded)}
