"""Writing an imported scenario, merging it into a base scenario, and the deployment view that the
round trip compares.

What this mirrors: the part of a what-if a deployment fixes — the model and its precision, the GPU,
the replicas, the vLLM engine arguments and the autoscaler — as opposed to what only the planner
knows (the traffic, the SLO, the prices). An import writes that part into a scenario (alone, or over
a ``--base`` scenario that holds the traffic), validated by the same models as ``servesim run``; the
header comment keeps every flag the simulator does not model. ``deployment_view`` is that part of a
resolved scenario with the implicit values spelled out (the model's native weight format, the KV
cache format ``auto`` stands for), so ``import(export(x)) == x`` can be checked field by field.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from simulator.errors import ConfigError, read_yaml

_IMPORT_MARKS = ("# imported by `servesim import", "# autoscaling imported by `servesim import")


def import_header(base: Path | None) -> list[str]:
    """The header comment an earlier import wrote at the top of ``base`` (kept when importing into
    it again, so its "not modelled" line survives); nothing for a scenario written by hand."""
    if base is None:
        return []
    from simulator.config import scenario_path

    lines: list[str] = []
    try:
        text = scenario_path(base).read_text()
    except (OSError, UnicodeDecodeError, ConfigError):
        return []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    if not lines or not lines[0].startswith(_IMPORT_MARKS):
        return []
    out: list[str] = []
    for line in lines:  # undo the wrapping of :func:`render`
        body = line[2:] if line.startswith("# ") else line[1:]
        if body.startswith("  ") and out:
            out[-1] += " " + body.strip()
        else:
            out.append(body)
    return [h for h in out if not h.startswith("base scenario: ")]


def other_imports(base: Path | None, kind: str) -> list[str]:
    """The base's import header without the block of ``kind`` (``vllm`` or ``autoscaling``),
    which the new import replaces; each block starts with its "imported by" line."""
    blocks: list[list[str]] = []
    for h in import_header(base):
        if h.startswith(("imported by `servesim import", "autoscaling imported by `servesim")):
            blocks.append([h])
        elif blocks:
            blocks[-1].append(h)
    drop = "autoscaling imported" if kind == "autoscaling" else "imported by"
    return [h for b in blocks if not b[0].startswith(drop) for h in b]


def base_raw(base: Path | None) -> tuple[dict[str, Any], Path | None]:
    """The base scenario's raw mapping (empty without a base)."""
    if base is None:
        return {}, None
    from simulator.config import scenario_path

    p = scenario_path(base)
    data, _ = read_yaml(p)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of scenario fields at the top level")
    return data, p


def merge_deployment(raw: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with ``model``, ``engine`` and ``fleet.gpu/tp/replicas`` replaced by ``fragment``'s."""
    out = copy.deepcopy(raw)
    fleet = out.get("fleet") or {}
    if fleet.get("pools"):
        raise ConfigError("--base: the base scenario has fleet.pools; an imported server is one "
                          "pool: use a single-pool base")
    out["model"] = fragment["model"]
    out["fleet"] = {**fleet, **fragment["fleet"]}
    out["engine"] = {**{k: v for k, v in (out.get("engine") or {}).items()
                        if k == "memory_reserve_gib"}, **fragment["engine"]}
    return out


def merge_autoscaling(raw: dict[str, Any], pool_name: str, pool: dict[str, Any],
                      top: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with ``autoscaling.pools[pool_name]`` (and the top fields given) replaced."""
    out = copy.deepcopy(raw)
    auto = dict(out.get("autoscaling") or {})
    auto.update(top)
    pools = dict(auto.get("pools") or {})
    pools[pool_name] = pool
    auto["pools"] = pools
    out["autoscaling"] = auto
    return out


def validated(data: dict[str, Any], where: str, base: Path | None) -> Any:
    """The Scenario ``data`` describes (one-line error otherwise)."""
    from simulator.config import scenario_from_dict

    d = dict(data)
    if base is not None:
        d["base_dir"] = str(base.resolve().parent)
    return scenario_from_dict(d, where)


def render(data: dict[str, Any], header: list[str]) -> str:
    """Scenario YAML with the header as comments (long lines wrapped at words)."""
    import textwrap

    lines: list[str] = []
    for h in header:
        wrapped = textwrap.wrap(h, 100, break_long_words=False, break_on_hyphens=False) or [""]
        lines += [f"# {wrapped[0]}"] + [f"#   {w}" for w in wrapped[1:]]
    return "\n".join(lines) + "\n" + yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True)


def write(text: str, out: Path | None) -> None:
    import typer

    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    typer.echo(f"wrote {out}", err=True)


def deployment_view(sc: Any) -> dict[str, Any]:
    """The deployment-fixed part of a Scenario, implicit values spelled out."""
    from simulator.profiles import load_model

    mp = load_model(sc.model.name)
    native_kv = "fp16" if mp.native_dtype == "fp16" else "bf16"
    kv = native_kv if sc.model.kv_cache_dtype == "auto" else sc.model.kv_cache_dtype
    return {
        "model": {"name": mp.name, "weight_dtype": sc.model.weight_dtype or mp.native_dtype,
                  "kv_cache_dtype": kv},
        "fleet": {"gpu": sc.fleet.gpu, "tp": sc.fleet.tp, "replicas": sc.fleet.replicas},
        "engine": sc.engine.model_dump(mode="json"),
        "autoscaling": (sc.autoscaling.model_dump(mode="json")
                        if sc.autoscaling is not None else None),
    }
