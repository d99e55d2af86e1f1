"""The compiled engine (``simulator._native``): used only when it is built from the current sources,
set aside all or none otherwise, and it changes nothing but speed — the same scenarios give
bit-identical frames compiled and as pure Python."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from simulator import _native, simulate
from tests.conftest import small_scenario

ROOT = Path(__file__).resolve().parents[1]
MODS = ("simulator.engine.alpha", "simulator.cluster.beta")


def _tree(tmp: Path, *, record: bool = True, extensions: bool = True) -> Path:
    """A package tree with two sources, their (empty) extensions and a build record."""
    pkg = tmp / "simulator"
    for m in MODS:
        src = _native.source_path(pkg, m)
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(f"X = {m!r}\n")
        if extensions:
            src.with_suffix(EXTENSION_SUFFIXES[0]).write_bytes(b"")
    if record:
        sources = {m: _native.digest(_native.source_path(pkg, m)) for m in MODS}
        (pkg / _native.RECORD).write_text(json.dumps({"sources": sources}))
    return pkg


def test_a_current_build_is_used(tmp_path: Path) -> None:
    assert _native.check(_tree(tmp_path), MODS, {}) == (True, "compiled (mypyc)")


def test_a_changed_source_sets_the_whole_build_aside(tmp_path: Path) -> None:
    pkg = _tree(tmp_path)
    _native.source_path(pkg, MODS[1]).write_text("X = 'edited'\n")
    ok, why = _native.check(pkg, MODS, {})
    assert not ok and "beta.py changed since it was compiled" in why and "pip install ." in why


@pytest.mark.parametrize("what", ["no extensions", "one missing", "no record", "bad record",
                                  "pure asked", "install failed", "install skipped"])
def test_otherwise_the_sources_run_and_the_reason_says_why(tmp_path: Path, what: str) -> None:
    env: dict[str, str] = {}
    no_ext = what in ("no extensions", "install failed", "install skipped")
    pkg = _tree(tmp_path, extensions=not no_ext, record=what != "no record")
    if what == "one missing":
        _native.extension_path(pkg, MODS[0]).unlink()  # type: ignore[union-attr]
    if what == "bad record":
        (pkg / _native.RECORD).write_text("{not json")
    if what == "pure asked":
        env[_native.PURE_ENV] = "1"
    if what == "install failed":  # what hatch_build.py records when compiling fails
        (pkg / _native.RECORD).write_text(json.dumps({"failed": "no C compiler: `gcc` is not found"}))
    if what == "install skipped":
        (pkg / _native.RECORD).write_text(json.dumps({"skipped": "SERVESIM_COMPILE=0"}))
    ok, why = _native.check(pkg, MODS, env)
    expect = {"no extensions": "not compiled: install with `pip install .`",
              "one missing": "alpha missing",
              "no record": "no valid build record", "bad record": "no valid build record",
              "pure asked": "SERVESIM_PURE=1",
              "install failed": "not compiled at install: no C compiler",
              "install skipped": "not compiled: SERVESIM_COMPILE=0 at install"}[what]
    assert not ok and why.startswith("pure Python (") and expect in why


def test_a_missing_compiler_is_named() -> None:
    env = {**os.environ, "CC": "servesim-no-such-cc -O2"}
    code = "from simulator import _native; print(_native.toolchain_problem())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env=env, timeout=120).stdout
    assert out.strip() == ("no C compiler: `servesim-no-such-cc` (the compiler this Python builds "
                           "extensions with) is not found")


_FRONT = """
import sys
from pathlib import Path
from mypyc.build import mypycify
from simulator import _native
tmp = Path(sys.argv[1])
cfg = tmp / "mypy.ini"
cfg.write_text(_native.BUILD_MYPY_CONFIG)
paths = [_native.source_path(Path("simulator"), m).as_posix() for m in _native.MODULES]
exts = mypycify(["--config-file", str(cfg), "--cache-dir", str(tmp / "cache"), *paths],
                group_name=_native.GROUP, target_dir=str(tmp / "c"))
print(len(exts))
"""


def test_the_engine_compiles_to_c_as_the_install_compiles_it(tmp_path: Path) -> None:
    """The install's mypyc reads the engine with BUILD_MYPY_CONFIG whatever the build environment
    holds (pip's isolated one has no pydantic, pandas or stubs): if this fails, a fresh
    ``pip install .`` installs the pure-Python engine. This runs mypyc's type check and C
    generation exactly as the build does (no third-party package visible), all but the C compiler
    (a few seconds)."""
    pytest.importorskip("mypyc.build")
    r = subprocess.run([sys.executable, "-c", _FRONT, str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(len(_native.MODULES) + 1)  # + the group library


def test_servesim_pure_imports_every_engine_module_from_source() -> None:
    code = ("import simulator, sys, json; from simulator import _native; "
            "import simulator.run; "
            "print(json.dumps([_native.status(), [sys.modules[m].__file__ for m in _native.MODULES]]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, _native.PURE_ENV: "1"}, timeout=120).stdout
    status, files = json.loads(out)
    assert status["compiled"] is False and "SERVESIM_PURE=1" in status["reason"]
    assert len(files) == len(_native.MODULES) and all(f.endswith(".py") for f in files)


def test_every_run_records_which_engine_ran() -> None:
    res = simulate(small_scenario(workload={"num_requests": 20}))
    assert res.summary["sim"]["native"] == _native.status()["reason"]


# ---- compiled against pure: bit for bit ----------------------------------------------------------

_DUMP = """
import pickle, sys
sys.path.insert(0, {root!r})
from tests.test_native import run_cases
pickle.dump(run_cases(), open({out!r}, "wb"))
"""


def run_cases() -> dict[str, Any]:
    """The fast-path exactness scenarios plus a small S2 (benchmarks/speed.py): every frame and
    the summary figures of each, with the fast path on."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import speed  # type: ignore[import-not-found]

    from simulator.config import scenario_from_dict
    from simulator.run import simulate
    from tests.cluster.test_fast_path import CASES

    out: dict[str, Any] = {}
    runs = {name: (lambda make=make: make(True)) for name, make in CASES.items()}
    runs["S2"] = lambda: simulate(scenario_from_dict(speed.scenario("S2", 3000)))
    for name, run in sorted(runs.items()):
        r = run()
        sim = {k: v for k, v in r.summary["sim"].items() if k not in ("wall_s", "native")}
        out[name] = {"requests": r.requests, "steps": r.steps, "timeseries": r.timeseries,
                     "itl": r.itl, "attempts": r.extra["attempts"],
                     "replicas": r.extra["replicas"],
                     "summary": {**{k: v for k, v in r.summary.items() if k != "sim"},
                                 "sim": sim}}
    return out


def test_compiled_and_pure_python_give_bit_identical_results(tmp_path: Path) -> None:
    status = _native.status()
    if not status["compiled"]:
        if os.environ.get("SERVESIM_REQUIRE_COMPILED", "") not in ("", "0"):  # CI with a compiler
            pytest.fail(f"the engine is not compiled here: {status['reason']}")
        pytest.skip(f"the engine is not compiled here: {status['reason']}")
    dump = tmp_path / "pure.pkl"
    subprocess.run([sys.executable, "-c", _DUMP.format(root=str(ROOT), out=str(dump))], cwd=ROOT,
                   check=True, env={**os.environ, _native.PURE_ENV: "1"}, timeout=900)
    pure = pickle.loads(dump.read_bytes())
    compiled = run_cases()
    assert sorted(pure) == sorted(compiled)
    for case, frames in compiled.items():
        for name, frame in frames.items():
            if isinstance(frame, pd.DataFrame):
                pd.testing.assert_frame_equal(pure[case][name], frame, check_exact=True,
                                              obj=f"{case}: {name}")
        assert pure[case]["summary"] == frames["summary"], case


def test_servesim_version_says_which_engine_and_can_require_the_compiled_one() -> None:
    env = {**os.environ, _native.PURE_ENV: "1"}
    cmd = [sys.executable, "-m", "simulator.cli", "version"]
    plain = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert plain.returncode == 0, plain.stderr
    assert f"engine   pure Python ({_native.PURE_ENV}=1); 0 of {len(_native.MODULES)}" in plain.stdout
    strict = subprocess.run([*cmd, "--require-compiled"], cwd=ROOT, capture_output=True, text=True,
                            env=env, timeout=120)
    assert strict.returncode == 1 and "the engine is not compiled" in strict.stderr
