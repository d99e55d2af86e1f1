"""Run folders on disk: whole or absent, never mixed.

What this models: nothing physical — the contract between a run and the tools that read its
folder later (``servesim report``, ``servesim fleet-plot``, notebooks). A run's files are written
into a temporary folder beside the destination (``.NAME.tmp-PID-…``) and only renamed into place
once every file is complete, with a ``manifest.json`` that lists each file's size and SHA-256. A
crash, a kill or a full disk during the save leaves the destination as it was (the previous run,
or nothing); a temporary folder left by a killed writer is removed by the next save beside it.

An existing destination is *replaced, never mixed*: when it is a run folder (it has a manifest or
a ``summary.json``) the new run takes its place whole, so no file of the old run (an old
``fleet_timeseries.parquet``) survives next to the new one. A non-empty folder that is not a run
folder is refused unless ``force`` is given (it may be someone's data).

``summary.json`` is strict JSON: a non-finite float (an undefined percentile, an infinite ratio)
is written as ``null``, never as ``NaN`` or ``Infinity``, which strict parsers reject.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simulator.errors import ConfigError

MANIFEST = "manifest.json"
FORMAT = "servesim-run/1"
"""The manifest's ``format``: the layout of a run folder this version writes."""

MIN_FREE_BYTES = 16 * 2**20
"""Free space below which ``--out`` is refused before simulating (a full disk)."""

Writer = Callable[[Path], None]
"""Writes one file at the path it is given."""


# --------------------------------------------------------------------------------------------
# Strict JSON
# --------------------------------------------------------------------------------------------


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (numpy scalars made plain)."""
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return finite(item())
    return obj


def strict_json(obj: Any, indent: int | None = 2) -> str:
    """JSON that every parser accepts: non-finite floats become null."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def is_run_folder(d: Path) -> bool:
    return (d / MANIFEST).is_file() or (d / "summary.json").is_file()


def _nearest_existing(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_out_dir(out: str | Path, force: bool = False) -> Path:
    """Refuse, before any simulating, a destination the run could not be saved to: a file, a
    folder that cannot be written, a non-empty folder that is not a run folder (without
    ``force``)."""
    d = Path(out)
    try:
        if d.exists() and not d.is_dir():
            raise ConfigError(f"--out {d}: exists and is not a folder; give a folder path")
        if d.is_dir() and not is_run_folder(d) and any(d.iterdir()) and not force:
            raise ConfigError(f"--out {d}: a non-empty folder that is not a servesim run folder; "
                              f"give a new or empty folder (or --force to replace it)")
        base = _nearest_existing(d.parent if d.parent != d else d)
        if not base.is_dir():
            raise ConfigError(f"--out {d}: {base} is not a folder")
        # the temporary folder is made beside the destination: probe that this works
        probe = tempfile.mkdtemp(prefix=".servesim-probe-", dir=base)
        os.rmdir(probe)
        free = shutil.disk_usage(base).free
        if free < MIN_FREE_BYTES:
            raise ConfigError(f"--out {d}: the disk holding {base} has only {free:,} bytes free "
                              f"(a run's files need more); free some space or pick another "
                              f"folder")
    except OSError as e:
        raise ConfigError(f"--out {d}: cannot write there ({e.strerror or e}); pick another "
                          f"folder") from None
    return d


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale(parent: Path, name: str) -> None:
    """Remove temporary folders of ``name`` left by writers that were killed."""
    for kind in ("tmp", "old"):
        for p in parent.glob(f".{name}.{kind}-*"):
            try:
                pid = int(p.name[len(name) + 6:].split("-")[0])
            except ValueError:
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(p, ignore_errors=True)


def write_run(out: str | Path, files: dict[str, Writer], force: bool = False) -> Path:
    """Write ``files`` (name → writer) as the run folder ``out``, whole or not at all.

    Returns ``out``. A failure (full disk, permissions) raises a one-line ConfigError and leaves
    ``out`` as it was; any other exception (a kill, Ctrl-C) likewise leaves it as it was."""
    d = Path(out)
    if d.exists():
        check_out_dir(d, force)
    parent = d.absolute().parent
    tmp: Path | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale(parent, d.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.tmp-{os.getpid()}-", dir=parent))
        entries: dict[str, dict[str, Any]] = {}
        for name, write in files.items():
            f = tmp / name
            write(f)
            with f.open("rb+") as fh:
                os.fsync(fh.fileno())
            entries[name] = {"bytes": f.stat().st_size, "sha256": _sha256(f)}
        manifest = {"format": FORMAT, "files": entries}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        with (tmp / MANIFEST).open("rb+") as fh:
            os.fsync(fh.fileno())
        if d.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{d.name}.old-{os.getpid()}-", dir=parent))
            os.rmdir(old)
            os.rename(d, old)
            os.rename(tmp, d)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, d)
        tmp = None
    except OSError as e:
        raise ConfigError(f"{d}: cannot write the run ({e.strerror or e}); nothing was written "
                          f"there, the folder is as it was") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return d


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def verify_run(d: str | Path) -> dict[str, Any]:
    """Check a run folder against its manifest (every file present, of its size and hash);
    returns the manifest, or raises a one-line ConfigError naming what is wrong."""
    d = Path(d)
    m = d / MANIFEST
    if not d.is_dir():
        raise ConfigError(f"{d}: not a folder")
    if not m.is_file():
        raise ConfigError(f"{d}: no {MANIFEST}, so not a complete run folder (an interrupted "
                          f"save, or written before run folders had manifests); run it again "
                          f"with --out {d}")
    try:
        manifest = json.loads(m.read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{m}: not a readable manifest; run it again with --out {d}") from None
    for name, meta in files.items():
        f = d / name
        if not f.is_file():
            raise ConfigError(f"{f}: listed in {MANIFEST} but missing; the folder is incomplete, "
                              f"run it again with --out {d}")
        if f.stat().st_size != meta.get("bytes") or _sha256(f) != meta.get("sha256"):
            raise ConfigError(f"{f}: differs from {MANIFEST} (size or SHA-256): changed or "
                              f"truncated since the run; run it again with --out {d}")
    return manifest
