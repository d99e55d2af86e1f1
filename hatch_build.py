"""Install-time build hook: compile the simulator's engine with mypyc (see ``simulator/_native.py``).

``pip install .`` runs this (hatchling's custom build hook). It compiles the modules listed in
``simulator._native.MODULES`` into C extensions *beside their sources in this checkout* — so the
tests and benchmarks run from the checkout use them too — and puts them in the wheel. A build whose
sources are unchanged since the last one (same SHA-256, mypy and Python) reuses it.

Optional by design: ``SERVESIM_COMPILE=0`` skips it, and if compiling fails (no C compiler, say) the
install goes on as pure Python with a one-line warning — same results, about 2.5× slower.
"""

from __future__ import annotations

import importlib.util
import json
import os
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


def _versions() -> dict[str, str]:
    import mypy.version

    return {"mypy": mypy.version.__version__, "python": sys.version.split()[0]}


def compile_native(root: Path) -> list[Path]:
    """Compile (or reuse) the engine's extensions in place; return the files the wheel needs."""
    nat = _native_module(root)
    pkg = root / "simulator"
    record = pkg / nat.RECORD
    sources = {m: nat.digest(nat.source_path(pkg, m)) for m in nat.MODULES}
    versions = _versions()
    group_lib = pkg / "_engine__mypyc"

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
    for m in nat.MODULES:
        ext = nat.extension_path(pkg, m)
        while ext is not None:
            ext.unlink()
            ext = nat.extension_path(pkg, m)
    for p in pkg.glob(group_lib.name + ".*"):
        p.unlink()
    record.unlink(missing_ok=True)

    from mypyc.build import mypycify
    from setuptools import Distribution

    cwd = os.getcwd()
    os.chdir(root)  # mypycify works with paths relative to the project
    try:
        paths = [nat.source_path(Path("simulator"), m).as_posix() for m in nat.MODULES]
        exts = mypycify(paths, opt_level="3", group_name=nat.GROUP,
                        target_dir="build/mypyc")
        dist = Distribution({"name": "servesim", "ext_modules": exts, "script_name": "setup.py"})
        cmd: Any = dist.get_command_obj("build_ext")
        cmd.inplace = True
        cmd.parallel = os.cpu_count() or 1
        cmd.build_temp = "build/mypyc-temp"
        dist.run_command("build_ext")
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

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if os.environ.get(COMPILE_ENV, "1").strip().lower() in ("0", "no", "false", "off"):
            self.app.display_info(f"servesim: {COMPILE_ENV}=0: the engine is not compiled")
            return
        root = Path(self.root)
        try:
            built = compile_native(root)
        except (Exception, SystemExit) as exc:  # a compiler error, no compiler, ...
            msg = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
            if len(msg[0]) > 160:
                msg[0] = msg[0][:160] + " …"
            self.app.display_warning(
                f"servesim: compiling the engine failed ({msg[0]}); installing the pure-Python "
                f"engine (same results, about 2.5× slower). Set {COMPILE_ENV}=0 to skip.")
            return
        self.app.display_info(f"servesim: compiled engine: {len(built) - 2} modules (mypyc)")
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            for path in built:
                build_data["force_include"][str(path)] = path.relative_to(root).as_posix()
