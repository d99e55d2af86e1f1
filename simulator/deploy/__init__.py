"""The deployment's own language: ``vllm serve`` command lines, Kubernetes Deployments / Pods / Helm
values, HPA ``autoscaling/v2`` and KEDA ``ScaledObject`` manifests — read into a scenario and written
back out of a plan.

What this mirrors: the artefacts a platform team already has (the vLLM flags of a running server, the
manifests of its cluster) and the ones it needs at the end (manifests it can ``kubectl apply``).

- :mod:`simulator.deploy.vllm_args` — ``vllm serve`` flags per vLLM version family (vLLM's own names
  and defaults, cited to its source) ↔ the scenario's ``model``, ``fleet`` and ``engine``;
- :mod:`simulator.deploy.hf_models` — Hugging Face model ids ↔ model profiles;
- :mod:`simulator.deploy.gpus` — Kubernetes GPU resources, node labels and instance types ↔ GPU
  profiles;
- :mod:`simulator.deploy.k8s` — the vLLM container inside a Deployment / Pod / Helm values file,
  and the Deployment written for a pool;
- :mod:`simulator.deploy.promql` — the PromQL forms on vLLM's metrics the simulator can evaluate;
- :mod:`simulator.deploy.hpa` / :mod:`simulator.deploy.keda` — autoscaler manifests ↔ the scenario's
  ``autoscaling`` section;
- :mod:`simulator.deploy.scenario_io` — writing the imported scenario (with its "not modelled"
  comment) and the deployment view compared by the round trip;
- :mod:`simulator.deploy.cli` — ``servesim import …`` and ``servesim export k8s``.

Leaves out: Services, Ingresses, the router / gateway in front (the scenario's ``fleet.router`` and
``gateway`` are not exported), multi-node (LeaderWorkerSet) deployments, LoRA adapters.
"""
