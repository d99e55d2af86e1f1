"""``servesim import vllm|hpa|keda`` and ``servesim export k8s``: the deployment's artefacts in, a
plan's manifests out (typer sub-apps registered by :mod:`simulator.cli`).

What this mirrors: a platform engineer's loop — take the command line and the autoscaler of the
server that runs today, simulate it against the traffic that is coming, let ``servesim plan`` pick
the cheapest configuration that meets the SLO, and apply its manifests.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from simulator.errors import ConfigError

import_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Read a vllm serve command line, an HPA or a KEDA ScaledObject into "
                              "a scenario.")
export_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Write Kubernetes manifests for a plan, run or scenario.")


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


BaseOpt = Annotated[Path | None, typer.Option(
    "--base", help="Scenario (file or shipped name) to import into; its traffic, SLO and prices are "
                   "kept. Default: only the imported sections.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Scenario YAML to write (default: "
                                                           "stdout).")]


@import_app.command("vllm")
def import_vllm(
    command: Annotated[list[str] | None, typer.Argument(
        help="The server's command line after `--`: vllm serve MODEL --flag value …")] = None,
    k8s: Annotated[Path | None, typer.Option(
        "--k8s", help="Read the command line from a Deployment / StatefulSet / Pod manifest or "
                      "production-stack Helm values instead.")] = None,
    gpu: Annotated[str | None, typer.Option(
        help="GPU profile (default: from the pod's node selector / affinity).")] = None,
    vllm_version: Annotated[str | None, typer.Option(
        "--vllm-version", help="vLLM version of the server (0.11, v0.8.5, v0, main): whose "
                               "defaults fill the flags not given. Default: the image tag, else "
                               "0.11.")] = None,
    model_profile: Annotated[str | None, typer.Option(
        "--model-profile", help="Model profile to use when the checkpoint's name matches none.")
                             ] = None,
    replicas: Annotated[int | None, typer.Option(
        min=1, help="Replicas (default: the Deployment's, else 1).")] = None,
    allow_unknown: Annotated[bool, typer.Option(
        "--allow-unknown", help="List flags this vLLM version does not know instead of "
                                "refusing them.")] = False,
    name: Annotated[str | None, typer.Option(help="Scenario name.")] = None,
    base: BaseOpt = None,
    out: OutOpt = None,
) -> None:
    """Turn a `vllm serve` command line (or the one inside a manifest) into a scenario."""
    try:
        text = import_vllm_text(command or [], k8s, gpu, vllm_version, model_profile, replicas,
                            allow_unknown, name, base)
    except ConfigError as e:
        _fail(str(e))
        return
    from simulator.deploy.scenario_io import write

    write(text, out)


def import_vllm_text(command: list[str], k8s: Path | None, gpu: str | None, version: str | None,
                 model_profile: str | None, replicas: int | None, allow_unknown: bool,
                 name: str | None, base: Path | None) -> str:
    import shlex

    from simulator.deploy import gpus, scenario_io, serve, vllm_args

    if bool(command) == (k8s is not None):
        raise ConfigError("give either the command line after `--` or --k8s FILE")
    env: dict[str, str] = {}
    reps = 1
    pod_gpu = pod_gpu_where = None
    per_pod = vendor = None
    annotations: dict[str, str] = {}
    fam = vllm_args.family_for(version) if version else None
    argv = list(command)
    if k8s is not None:
        from simulator.deploy.k8s import find_vllm

        vc = find_vllm(k8s)
        argv, env, reps = vc.argv, vc.env, vc.replicas
        pod_gpu, pod_gpu_where, per_pod, vendor = vc.gpu, vc.gpu_source, vc.gpus_per_pod, \
            vc.gpu_vendor
        annotations = vc.annotations
        if fam is None and vc.image:
            fam = vllm_args.family_from_image(vc.image)
    fam = fam or vllm_args.family_for(None)
    parsed = vllm_args.parse_serve(argv, fam, allow_unknown)
    notes: list[str] = []
    if gpu is not None:
        g = gpus.gpu_profile(gpu)
        if pod_gpu and pod_gpu != g:
            notes.append(f"--gpu {g} replaces the pod's {pod_gpu} ({pod_gpu_where})")
    elif pod_gpu is not None:
        g = pod_gpu
        notes.append(f"GPU {g} from the pod's {pod_gpu_where}")
    else:
        from simulator.profiles import list_gpus

        raise ConfigError("the GPU is not known: pass --gpu (known: "
                          f"{', '.join(x.name for x in list_gpus())})" +
                          ("" if k8s is None else f"; {k8s} has no GPU node selector or affinity"))
    from simulator.profiles import load_gpu

    if vendor is not None and load_gpu(g).vendor != vendor:
        raise ConfigError(f"GPU {g} is {load_gpu(g).vendor}, but the pod requests "
                          f"{gpus.GPU_RESOURCES[vendor]}")
    imp = serve.serve_to_scenario(parsed, fam, g, replicas=replicas or reps, env=env,
                                  model_profile=model_profile,
                                  command=shlex.join(["vllm", "serve", *vllm_args.strip_launcher(argv)]))
    tp = imp.data["fleet"]["tp"]
    dp = vllm_args.as_int("data-parallel-size", parsed.values.get("data-parallel-size", 1))
    if per_pod is not None:
        if per_pod < tp * dp:
            raise ConfigError(f"the pod requests {per_pod} GPU(s) but vllm serve needs "
                              f"tensor-parallel-size {tp} × data-parallel-size {dp} = {tp * dp}")
        if per_pod > tp * dp:
            notes.append(f"the pod requests {per_pod} GPUs, vllm serve uses {tp * dp}; the idle "
                         f"ones are not billed in the simulation")
    reserve = annotations.get("servesim.io/memory-reserve-gib")
    if reserve is not None:
        imp.data["engine"]["memory_reserve_gib"] = float(reserve)
    raw, base_path = scenario_io.base_raw(base)
    data = scenario_io.merge_deployment(raw, imp.data)
    if name or not raw:
        data = {"name": name or _scenario_name(imp.data), **{k: v for k, v in data.items()
                                                              if k != "name"}}
    if raw:
        f = imp.data["fleet"]
        data["description"] = (f"{imp.data['model']['name']} on {f['replicas']} × {f['gpu']} "
                               f"tp={f['tp']} (imported vllm serve) with the rest of "
                               f"{raw.get('name', base)}")
    sc = scenario_io.validated(data, "imported scenario", base_path)
    from simulator.run import resolve_deployment

    resolve_deployment(sc)  # the model must fit the GPU, as `servesim run` checks
    header = imp.header[:2] + [f"note: {n}" for n in notes] + imp.header[2:]
    header += scenario_io.other_imports(base, "vllm")  # an autoscaler imported earlier
    if base_path is not None:
        header.append(f"base scenario: {base_path}")
    return scenario_io.render(data, header)


def _scenario_name(fragment: dict[str, Any]) -> str:
    from simulator.deploy.k8s import slug

    f = fragment["fleet"]
    return slug(f"{fragment['model']['name']}-{f['gpu']}-tp{f['tp']}")


def import_autoscaler_text(kind: str, file: Path, pool_name: str, base: Path | None) -> str:
    from simulator.deploy import hpa, keda, scenario_io
    from simulator.deploy.k8s import load_documents

    want = "HorizontalPodAutoscaler" if kind == "hpa" else "ScaledObject"
    all_docs = [d for d in load_documents(file) if isinstance(d, dict)]
    docs = [d for d in all_docs if d.get("kind") == want]
    if not docs and kind == "keda":  # production-stack Helm values: modelSpec[].keda
        docs = [so for d in all_docs if d.get("kind") is None for so in keda.from_helm_values(d)]
    if not docs:
        raise ConfigError(f"{file}: no {want} in the file")
    if len(docs) > 1:
        raise ConfigError(f"{file}: {len(docs)} {want} objects; keep the one of the pool to import")
    doc = docs[0]
    where = f"{file}: {want} {(doc.get('metadata') or {}).get('name', '?')}"
    fn = hpa.import_hpa if kind == "hpa" else keda.import_keda
    pool, top, header = fn(doc, where)
    raw, base_path = scenario_io.base_raw(base)
    data = scenario_io.merge_autoscaling(raw, pool_name, pool, top)
    scenario_io.validated(data, where, base_path)
    header = scenario_io.other_imports(base, "autoscaling") + header
    if base_path is not None:
        header.append(f"base scenario: {base_path}")
    return scenario_io.render(data, header)


@import_app.command("hpa")
def import_hpa(
    file: Annotated[Path, typer.Argument(help="YAML with an autoscaling/v2 "
                                              "HorizontalPodAutoscaler.")],
    pool: Annotated[str, typer.Option(help="Scenario pool it scales.")] = "default",
    base: BaseOpt = None,
    out: OutOpt = None,
) -> None:
    """Turn an HPA on vLLM metrics into the scenario's autoscaling section."""
    from simulator.deploy.scenario_io import write

    try:
        write(import_autoscaler_text("hpa", file, pool, base), out)
    except ConfigError as e:
        _fail(str(e))


@import_app.command("keda")
def import_keda(
    file: Annotated[Path, typer.Argument(help="YAML with a KEDA ScaledObject.")],
    pool: Annotated[str, typer.Option(help="Scenario pool it scales.")] = "default",
    base: BaseOpt = None,
    out: OutOpt = None,
) -> None:
    """Turn a KEDA ScaledObject (prometheus triggers on vLLM metrics) into the scenario's
    autoscaling section."""
    from simulator.deploy.scenario_io import write

    try:
        write(import_autoscaler_text("keda", file, pool, base), out)
    except ConfigError as e:
        _fail(str(e))


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def source_scenario(src: Path) -> tuple[Any, str, list[str]]:
    """The scenario of a plan folder (its best configuration), a run folder or a scenario file,
    what it is, and the "not modelled" lines of the import that wrote it (a scenario file)."""
    from simulator.config import load_scenario
    from simulator.deploy.scenario_io import import_header

    if src.is_dir():
        for cand, what in ((src / "best" / "scenario.yaml", "plan's best configuration"),
                           (src / "scenario.yaml", "run")):
            if cand.is_file():
                return load_scenario(cand), f"{what} {cand}", []
        if (src / "plan.json").is_file():
            raise ConfigError(f"{src}: the plan found no configuration meeting its SLO (no best/); "
                              f"nothing to export")
        raise ConfigError(f"{src}: neither a plan folder (best/scenario.yaml) nor a run folder "
                          f"(scenario.yaml)")
    kept = [h for h in import_header(src)
            if h.startswith(("not modelled: ", "not recognised")) and not h.endswith("(none)")]
    return load_scenario(src), f"scenario {src}", kept


def export_manifests(sc: Any, *, version: str | None = None, autoscaler: str = "auto",
                     image: str | None = None, name: str | None = None,
                     prometheus: str | None = None, source: str = "",
                     not_modelled: list[str] | None = None
                     ) -> dict[str, tuple[list[dict[str, Any]], list[str]]]:
    """File name → (documents, header comments) for every pool of ``sc``."""
    from simulator import __version__
    from simulator.deploy import hpa, k8s, keda, serve, vllm_args
    from simulator.profiles import load_gpu
    from simulator.run import pool_scenario

    if autoscaler not in ("auto", "hpa", "keda"):
        raise ConfigError(f"--autoscaler {autoscaler!r}: expected auto, hpa or keda")
    base = k8s.slug(name or sc.name)
    pools = ([(p.name, pool_scenario(sc, p, f"fleet.pools[{i}] ({p.name})"))
              for i, p in enumerate(sc.fleet.pools)] if sc.fleet.pools else [("default", sc)])
    out: dict[str, tuple[list[dict[str, Any]], list[str]]] = {}
    for pool_name, sub in pools:
        eng = sub.engine
        fam = vllm_args.family_for(version) if version else (
            vllm_args.FAMILIES["v0"] if eng.scheduler == "v0" else vllm_args.family_for(None))
        args, env, notes = serve.scenario_to_serve(sub.model.name, sub.model.weight_dtype,
                                                   sub.model.kv_cache_dtype, sub.fleet.tp, eng,
                                                   fam)
        dname = base if len(pools) == 1 else k8s.slug(f"{base}-{pool_name}")
        ann = {"servesim.io/source": source or sc.name, "servesim.io/version": __version__,
               "servesim.io/memory-reserve-gib": f"{eng.memory_reserve_gib:g}"}
        gpu = load_gpu(sub.fleet.gpu)
        tag = fam.image_tag
        m = re.fullmatch(r"v?(\d+\.\d+)(\.\d+)?", version or "")
        if m:  # the version asked for, not its family's representative
            tag = f"v{m.group(1)}{m.group(2) or '.0'}"
        dep = k8s.deployment(dname, args, env, image=image or f"vllm/vllm-openai:{tag}",
                             gpu=gpu.name, vendor=gpu.vendor, tp=sub.fleet.tp,
                             replicas=sub.fleet.replicas, annotations=ann)
        if sc.provisioning is not None and sc.provisioning.drain_timeout_s is not None:
            dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = int(
                sc.provisioning.drain_timeout_s)
        header = [f"servesim {__version__} export of {source or sc.name}, pool {pool_name}",
                  f"vLLM {fam.name}: {serve.command_line(args)}", *notes,
                  *(f"{h} — the server had these; they were not simulated and are not written "
                    f"here: add them back if it needs them" for h in not_modelled or [])]
        out[f"{dname}-deployment.yaml"] = ([dep], header)
        auto = sc.autoscaling.pools.get(pool_name) if sc.autoscaling is not None else None
        if auto is None:
            continue
        kind = autoscaler
        if kind == "auto":
            needs_keda = auto.min_replicas == 0 or any(
                s.kind == "queue" or (s.kind == "pods" and s.metric in (
                    "generation_tokens_per_s", "time_to_first_token_p90_s"))
                for s in auto.signals)
            kind = "keda" if needs_keda else "hpa"
        if kind == "hpa":
            doc = hpa.export_hpa(dname, dname, sc.autoscaling, auto)
            out[f"{dname}-hpa.yaml"] = ([doc], header[:1])
        else:
            doc = keda.export_keda(dname, dname, sc.autoscaling, auto, vllm_args_model(sub),
                                   prometheus or keda.DEFAULT_PROMETHEUS)
            out[f"{dname}-scaledobject.yaml"] = ([doc], header[:1])
    return out


def vllm_args_model(sub: Any) -> str:
    from simulator.deploy.hf_models import hf_id_for

    return hf_id_for(sub.model.name)


@export_app.command("k8s")
def export_k8s(
    src: Annotated[Path, typer.Argument(help="Plan folder (its best configuration), run folder "
                                             "or scenario file.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the manifests.")],
    vllm_version: Annotated[str | None, typer.Option(
        "--vllm-version", help="vLLM family of the image and flags (default 0.11; the V0 engine: "
                               "0.8 with VLLM_USE_V1=0).")] = None,
    autoscaler: Annotated[str, typer.Option(
        help="auto (HPA unless the autoscaler needs a query or scale to zero: KEDA), hpa or "
             "keda.")] = "auto",
    image: Annotated[str | None, typer.Option(help="Container image (default "
                                                   "vllm/vllm-openai:<family tag>).")] = None,
    name: Annotated[str | None, typer.Option(help="Object name (default: the scenario's).")
                    ] = None,
    prometheus: Annotated[str | None, typer.Option(
        help="Prometheus URL of KEDA's triggers.")] = None,
) -> None:
    """Write the Deployment (and HPA or ScaledObject) of a plan's chosen configuration."""
    from simulator.deploy.k8s import dump

    try:
        sc, what, kept = source_scenario(src)
        files = export_manifests(sc, version=vllm_version, autoscaler=autoscaler, image=image,
                                 name=name, prometheus=prometheus, source=what, not_modelled=kept)
    except ConfigError as e:
        _fail(str(e))
        return
    out.mkdir(parents=True, exist_ok=True)
    for fname, (docs, header) in files.items():
        (out / fname).write_text(dump(docs, header))
        typer.echo(f"wrote {out / fname}")
