"""Install-time build hook: compile the simulator's engine with mypyc (see ``simulator/_native.py``).

``pip install .`` runs this (hatchling's custom build hook). It compiles the modules listed in
``simulator._native.MODULES`` into C extensions *beside their sources in this checkout* — so the
tests and benchmarks run from the checkout use them too — and puts them in the wheel. A build whose
sources are unchanged since the last one (same SHA-256, mypy and Python) reuses it.

The compile does not depend on what happens to be installed where pip builds: mypyc reads the code
with ``simulator._native.BUILD_MYPY_CONFIG`` (standard library and this project only, third-party
packages as Any, errors only from the compiled modules), not with pyproject.toml's strict ``mypy``
settings, which see whatever stubs the environment has.

Optional by design: ``SERVESIM_COMPILE=0`` skips it, and if compiling fails (no C compiler, say) the
install goes on as pure Python with a one-line warning giving the reason — same results, about 2.5×
slower. The reason is recorded in ``simulator/_native.json``, so ``servesim version`` and every run
say it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

COMPILE_ENV = "SERVESIM_COMPILE"


def _native_module(root: Path) -> ModuleType:
    """``simulator/_native.py``, loaded by path (nothing is installed yet)."""
    spec = importlib.util.spec_from_file_location("_servesim_native", root / "simulator/_native.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class CompileFailure(Exception):
    """Compiling failed; the message is the reason in one line."""


def _versions(nat: ModuleType) -> dict[str, str]:
    import mypy.version

    return {"mypy": mypy.version.__version__, "python": sys.version.split()[0],
            "mypy_config": hashlib.sha256(nat.BUILD_MYPY_CONFIG.encode()).hexdigest()[:16]}


def _mypy_reason(text: str) -> str:
    """mypy's first error (and how many there are) from what mypycify printed."""
    errors = [ln.strip() for ln in text.splitlines() if re.search(r":\d+: error: ", ln)]
    if not errors:
        last = [ln.strip() for ln in text.splitlines() if ln.strip()][-1:]
        return f"mypyc: {last[0] if last else 'failed'}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"mypyc type check: {errors[0]}{more}"


def remove_build(root: Path) -> None:
    """Remove the compiled extensions and the build record from the checkout."""
    nat = _native_module(root)
    pkg = root / "simulator"
    for m in nat.MODULES:
        ext = nat.extension_path(pkg, m)
        while ext is not None:
            ext.unlink()
            ext = nat.extension_path(pkg, m)
    for p in pkg.glob("_engine__mypyc.*"):
        if p.suffix in (".so", ".pyd"):
            p.unlink()
    (pkg / nat.RECORD).unlink(missing_ok=True)


def compile_native(root: Path) -> list[Path]:
    """Compile (or reuse) the engine's extensions in place; return the files the wheel needs."""
    nat = _native_module(root)
    pkg = root / "simulator"
    record = pkg / nat.RECORD
    sources = {m: nat.digest(nat.source_path(pkg, m)) for m in nat.MODULES}
    versions = _versions(nat)

    def outputs() -> list[Path]:
        exts = [nat.extension_path(pkg, m) for m in nat.MODULES]
        libs = [p for p in pkg.glob("_engine__mypyc.*") if p.suffix in (".so", ".pyd")]
        if any(e is None for e in exts) or not libs:
            return []
        return [*(e for e in exts if e is not None), *libs, record]

    try:
        old = json.loads(record.read_text())
    except (OSError, ValueError):
        old = None
    if old == {"sources": sources, **versions} and outputs():
        return outputs()

    # Nothing stale may survive a failed build: remove the old extensions and record first.
    remove_build(root)

    problem = nat.toolchain_problem()
    if problem:
        raise CompileFailure(problem)

    from mypyc.build import mypycify
    from setuptools import Distribution

    config = root / "build/mypyc/mypy.ini"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(nat.BUILD_MYPY_CONFIG)
    cwd = os.getcwd()
    os.chdir(root)  # mypycify works with paths relative to the project
    try:
        paths = [nat.source_path(Path("simulator"), m).as_posix() for m in nat.MODULES]
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                exts = mypycify(["--config-file", config.as_posix(), *paths], opt_level="3",
                                group_name=nat.GROUP, target_dir="build/mypyc")
        except (Exception, SystemExit) as exc:
            sys.stderr.write(printed.getvalue())
            raise CompileFailure(_mypy_reason(printed.getvalue() + f"\n{exc}")) from exc
        dist = Distribution({"name": "servesim", "ext_modules": exts, "script_name": "setup.py"})
        cmd: Any = dist.get_command_obj("build_ext")
        cmd.inplace = True
        cmd.parallel = os.cpu_count() or 1
        cmd.build_temp = "build/mypyc-temp"
        try:
            dist.run_command("build_ext")
        except (Exception, SystemExit) as exc:
            raise CompileFailure(f"the C compiler failed ({str(exc).strip() or type(exc).__name__}; "
                                 f"its errors are above, with `pip install -v`)") from exc
    finally:
        os.chdir(cwd)
    record.write_text(json.dumps({"sources": sources, **versions}, indent=1, sort_keys=True) + "\n")
    built = outputs()
    if not built:
        raise RuntimeError("the build produced no extensions")
    return built


class NativeBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compile the engine when building the wheel (or an editable install)."""

    PLUGIN_NAME = "custom"

    def _record(self, record: Path, why: dict[str, str], version: str,
                build_data: dict[str, Any]) -> None:
        """Record why the engine is pure Python where ``simulator._native.check`` reads it."""
        remove_build(Path(self.root))  # nothing stale beside the record
        record.write_text(json.dumps(why, indent=1) + "\n")
        if version != "editable":
            build_data["force_include"][str(record)] = record.relative_to(Path(self.root)).as_posix()

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        record = root / "simulator" / _native_module(root).RECORD
        if os.environ.get(COMPILE_ENV, "1").strip().lower() in ("0", "no", "false", "off"):
            self.app.display_info(f"servesim: {COMPILE_ENV}=0: the engine is not compiled")
            self._record(record, {"skipped": f"{COMPILE_ENV}=0"}, version, build_data)
            return
        try:
            built = compile_native(root)
        except (Exception, SystemExit) as exc:  # no compiler, a type or compiler error, ...
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            why = lines[0] if isinstance(exc, CompileFailure) else f"{type(exc).__name__}: {lines[-1]}"
            if len(why) > 300:
                why = why[:300] + " …"
            self._record(record, {"failed": why}, version, build_data)
            self.app.display_warning(
                f"servesim: the engine was not compiled: {why}. Installing the pure-Python engine "
                f"(same results, about 2.5× slower); `servesim version` says which engine is "
                f"installed. Set {COMPILE_ENV}=0 to skip compiling.")
            return
        self.app.display_info(f"servesim: compiled engine: {len(built) - 2} modules (mypyc)")
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            for path in built:
                build_data["force_include"][str(path)] = path.relative_to(root).as_posix()
