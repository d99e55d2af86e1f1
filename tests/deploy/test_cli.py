"""`servesim import vllm|hpa|keda` and `servesim export k8s` end to end: import → scenario → a short
run; a run folder and a plan folder → manifests; bad input → one line, exit 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from simulator.cli import app
from simulator.config import load_scenario
from simulator.run import simulate

DATA = Path(__file__).parent / "data"
runner = CliRunner()


def test_import_vllm_then_keda_then_run(tmp_path: Path) -> None:
    sc_file = tmp_path / "llama8b.yaml"
    r = runner.invoke(app, ["import", "vllm", "--gpu", "H100-SXM", "--base", "chat-h100",
                            "--out", str(sc_file), "--", "vllm", "serve",
                            "meta-llama/Llama-3.1-8B-Instruct", "--max-num-seqs", "128",
                            "--max-model-len", "8192", "--enforce-eager"])
    assert r.exit_code == 0, r.output
    text = sc_file.read_text()
    assert text.startswith("# imported by `servesim import vllm`")
    assert "# not modelled: --enforce-eager" in text
    auto_file = tmp_path / "autoscaled.yaml"
    r = runner.invoke(app, ["import", "keda", str(DATA / "keda-queue.yaml"), "--base",
                            str(sc_file), "--out", str(auto_file)])
    assert r.exit_code == 0, r.output
    sc = load_scenario(auto_file, ["workload.num_requests=200", "fleet.replicas=1"])
    assert sc.engine.max_num_seqs == 128 and sc.fleet.gpu == "H100-SXM"
    assert sc.workload.system_prompt_tokens == load_scenario("chat-h100").workload.system_prompt_tokens
    assert sc.autoscaling is not None and sc.autoscaling.pools["default"].min_replicas == 0
    res = simulate(sc)
    assert res.summary["requests"]["completed"] > 0
    assert "autoscaling" in res.summary


def test_import_deployment_and_hpa_then_run(tmp_path: Path) -> None:
    sc_file = tmp_path / "llama70b.yaml"
    assert runner.invoke(app, ["import", "vllm", "--k8s", str(DATA / "deployment-llama70b.yaml"),
                               "--out", str(sc_file)]).exit_code == 0
    both = tmp_path / "both.yaml"
    r = runner.invoke(app, ["import", "hpa", str(DATA / "hpa-waiting.yaml"), "--base",
                            str(sc_file), "--out", str(both)])
    assert r.exit_code == 0, r.output
    sc = load_scenario(both, ["workload.num_requests=150", "workload.arrival.kind=poisson",
                                 "workload.arrival.rate=4"])
    assert sc.fleet.replicas == 2 and sc.autoscaling is not None
    res = simulate(sc)
    assert res.summary["deployment"]["tp"] == 2
    assert res.summary["requests"]["completed"] > 0


def test_export_from_run_and_plan_folders(tmp_path: Path) -> None:
    res = simulate(load_scenario("cold-start-cascade", ["workload.duration_s=30"]))
    run_dir = res.save(tmp_path / "run")
    r = runner.invoke(app, ["export", "k8s", str(run_dir), "--out", str(tmp_path / "m1")])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "m1").iterdir()) == [
        "cold-start-cascade-deployment.yaml", "cold-start-cascade-hpa.yaml"]
    # a plan folder: its best configuration lives in best/ (servesim plan --out)
    plan_dir = tmp_path / "plan"
    shutil.copytree(run_dir, plan_dir / "best")
    (plan_dir / "plan.json").write_text("{}")
    r = runner.invoke(app, ["export", "k8s", str(plan_dir), "--out", str(tmp_path / "m2"),
                            "--autoscaler", "keda", "--name", "llama70b"])
    assert r.exit_code == 0, r.output
    so = yaml.safe_load((tmp_path / "m2" / "llama70b-scaledobject.yaml").read_text())
    assert so["spec"]["scaleTargetRef"]["name"] == "llama70b"
    assert "plan's best configuration" in (tmp_path / "m2" / "llama70b-deployment.yaml").read_text()
    (plan_dir / "best" / "scenario.yaml").unlink()
    r = runner.invoke(app, ["export", "k8s", str(plan_dir), "--out", str(tmp_path / "m3")])
    assert r.exit_code == 2 and "nothing to export" in r.output


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cases = [
        (["import", "vllm", "--gpu", "H100-SXM", "--", "vllm", "serve", "meta-llama/Llama-3.1-8B",
          "--max-num-seqz", "8"], "error: vllm serve --max-num-seqz: not a flag of vLLM 0.11"),
        (["import", "vllm", "--gpu", "H100-SXM", "--", "vllm", "serve", "foo/Bar-7B"],
         "error: model 'foo/Bar-7B': no model profile matches; known: "),
        (["import", "vllm", "--", "vllm", "serve", "meta-llama/Llama-3.1-8B"],
         "error: the GPU is not known: pass --gpu"),
        (["import", "vllm", "--gpu", "H100-SXM", "--", "vllm", "serve",
          "meta-llama/Llama-3.1-405B-Instruct"], "error: fleet.tp: Llama-3.1-405B"),
        (["import", "hpa", str(DATA / "keda-queue.yaml")], "no HorizontalPodAutoscaler"),
        (["export", "k8s", str(tmp_path), "--out", str(tmp_path / "x")],
         "neither a plan folder"),
    ]
    for argv, msg in cases:
        r = runner.invoke(app, argv)
        assert r.exit_code == 2, (argv, r.output)
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], (argv, r.output)


def test_export_of_an_imported_scenario_keeps_the_unmodelled_flags_in_view(tmp_path: Path) -> None:
    sc_file = tmp_path / "s.yaml"
    assert runner.invoke(app, ["import", "vllm", "--gpu", "H200-SXM", "--out", str(sc_file), "--",
                               "vllm", "serve", "Qwen/Qwen3-32B", "--enforce-eager",
                               "--max-model-len", "16k"]).exit_code == 0
    r = runner.invoke(app, ["export", "k8s", str(sc_file), "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    text = next((tmp_path / "m").glob("*-deployment.yaml")).read_text()
    assert "# not modelled: --enforce-eager — the server had these" in text
    dep = yaml.safe_load(text)
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--enforce-eager" not in args and args[args.index("--max-model-len") + 1] == "16000"
