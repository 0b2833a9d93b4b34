"""``job.processes``: the job's command under torchrun (backend/torchrun.py), and the example job on
two real processes (DistributedDataParallel, gloo on this machine's CPUs) through the real CLI on
the local and the ssh runner: one MLflow run, rank 0's metrics only (one value a step), the
outputs once. Also two such jobs at once on one machine (torchrun's free ports), and a bad value."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests import sshd_support
from tests.conftest import ROOT, git, make_example_repo, run_cli
from tests.sshd_support import Sshd
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.store import RunStore
from trainboard.backend.torchrun import distributed_command, launcher
from trainboard.backend.tracking import Tracking

sshd = sshd_support.sshd  # the module's real sshd (a fixture)

EXAMPLE = ROOT / "examples" / "intents"
PY = sys.executable  # the remote login's PATH has no venv: the job names the interpreter
TINY = {  # the example's tiny setting: 4 steps of 16 rows, 40 held-out rows, short texts
    "epochs": 1, "max_train_samples": 64, "max_eval_samples": 40, "batch_size": 16, "log_every": 2,
    "eval_slice": 16, "max_length": 16, "evals_per_epoch": 2,
}
STEPS = 4  # 64 rows, a global batch of 16 (2 processes x 8)


# -- the command -----------------------------------------------------------------------------------------------


def test_one_process_keeps_the_command_as_it_is() -> None:
    assert distributed_command("python train.py --x 'a b'", 1) == "python train.py --x 'a b'"
    with pytest.raises(ValueError, match="at least 1"):
        distributed_command("python train.py", 0)


def test_several_processes_run_the_command_verbatim_under_torchrun() -> None:
    command = "FOO=1 /opt/venv/bin/python3.11 train.py --name \"it's\" $HOME"
    wrapped = distributed_command(command, 4)
    words = shlex.split(wrapped)
    assert words[:4] == ["exec", "/opt/venv/bin/python3.11", "-m", "torch.distributed.run"]
    assert words[4:8] == ["--standalone", "--nproc-per-node", "4", "--no-python"]
    assert words[8:] == ["bash", "--norc", "-c", command]  # the command itself, once per rank
    # A command that does not start with Python: torchrun from PATH, else python3's module.
    assert "command -v torchrun" in launcher("dvc repro") and "python3 -m torch.distributed.run" in launcher("make")
    assert launcher("python -u train.py") == "python -m torch.distributed.run"
    assert launcher("'/path with space/python' train.py") == "'/path with space/python' -m torch.distributed.run"


def _example_module(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLE / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_global_batch_of_two_processes_is_the_batch_of_one() -> None:
    """DistributedSampler deals one permutation out in turn: at every step the two processes'
    batches of 8 together are the 16 rows one process trains on at that step."""
    distributed = _example_module("distributed")
    rows, batch = 100, 16
    for epoch in (0, 1):
        one = distributed.shard_order(rows, distributed.World(), 42, epoch)
        assert sorted(one) == list(range(rows))
        ranks = [distributed.World(rank=r, size=2, local_rank=r, local_size=2) for r in (0, 1)]
        shares = [distributed.shard_order(rows, world, 42, epoch) for world in ranks]
        assert len(shares[0]) == len(shares[1]) == rows // 2 and ranks[0].rank_batch(batch) == batch // 2
        for step in range(rows // batch):
            together = [i for share in shares for i in share[step * batch // 2 : (step + 1) * batch // 2]]
            assert sorted(together) == sorted(one[step * batch : (step + 1) * batch])
    assert distributed.shard_order(rows, distributed.World(), 42, 0) != one  # each epoch its own order
    assert distributed.World(size=3, local_size=3).rank_batch(16) == 6  # the global batch: 18 rows
    assert distributed.World(local_size=2).threads(2) == 1 and distributed.World(local_size=4).threads(2) == 1


def _no_dropout_model(folder: Path) -> Path:
    """The bundled MiniLM with dropout off (its files linked, its config.json edited): training is
    then deterministic, so one process and two must compute the same thing."""
    bundled = _example_module("train").bundled_model_dir()
    folder.mkdir()
    for item in bundled.iterdir():
        if item.name != "config.json":
            (folder / item.name).symlink_to(item)
    config = json.loads((bundled / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.slow
def test_two_processes_train_exactly_as_one(tmp_path: Path) -> None:
    """The same global batches, DDP's averaged gradient, the losses and the evaluation gathered over
    both processes: without dropout, every progress line's loss and the final scores are one
    process's (to the printed digits)."""
    model = _no_dropout_model(tmp_path / "model")
    data = tmp_path / "intents.csv"  # the example's own data: a fresh clone has no ../shared beside it
    subprocess.run([PY, str(EXAMPLE / "make_data.py"), "--out", str(data)], check=True, capture_output=True)
    params = {**TINY, "max_train_samples": 96, "max_eval_samples": 60, "log_every": 1, "model": str(model),
              "data": str(data), "evals_per_epoch": 2}
    outputs = {}
    for processes in (1, 2):
        work = tmp_path / f"p{processes}"
        work.mkdir()
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        command = distributed_command(f"{shlex.quote(PY)} {shlex.quote(str(EXAMPLE / 'train.py'))}", processes)
        proc = subprocess.run(["bash", "--norc", "-c", command], cwd=work, capture_output=True, text=True,
                              timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert ("2 processes (torchrun): process group gloo" in proc.stdout) == (processes == 2)
        progress = [line.rsplit(" samples_per_s=", 1)[0] for line in proc.stdout.splitlines()
                    if line.startswith("trainboard:progress")]
        evals = [line.rsplit(" (", 1)[0] for line in proc.stdout.splitlines() if line.startswith("eval at step")]
        outputs[processes] = (progress, evals, json.loads((work / "metrics.json").read_text()))
    (progress, evals, metrics), (progress2, evals2, metrics2) = outputs[1], outputs[2]
    assert len(progress) == 7 and "loss=" in progress[-1]  # 96 rows / 16: 6 steps, and step 0
    assert progress2 == progress and evals2 == evals and len(evals) == 2
    for key in ("f1", "f1_macro", "precision", "recall", "accuracy", "eval_loss", "loss"):
        assert metrics2[key] == pytest.approx(metrics[key], abs=1e-4), key
    assert metrics2["per_class"].keys() == metrics["per_class"].keys()


RANKS_JOB = textwrap.dedent(
    """
    import os, time, torch, torch.distributed as dist
    dist.init_process_group("gloo")
    total = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(total)
    time.sleep(1.0)  # both jobs hold their ports at the same time
    print(f"rank={dist.get_rank()} size={dist.get_world_size()} sum={total.item():g} "
          f"port={os.environ['MASTER_PORT']} tag={os.environ['TAG']}", flush=True)
    dist.barrier()
    dist.destroy_process_group()
    """
)


def test_two_jobs_of_two_processes_at_once_do_not_collide(tmp_path: Path) -> None:
    """--standalone: each torchrun hosts its rendezvous on a port the system picks."""
    (tmp_path / "ranks.py").write_text(RANKS_JOB)
    command = distributed_command(f"{shlex.quote(PY)} ranks.py", 2)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(["bash", "--norc", "-c", command], cwd=tmp_path, env=dict(env, TAG=tag),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for tag in ("a", "b")]
    outs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outs
    ports = []
    for tag, out in zip(("a", "b"), outs, strict=True):
        lines = sorted(line for line in out.splitlines() if line.startswith("rank="))
        assert [line.split(" port=")[0] for line in lines] == ["rank=0 size=2 sum=3", "rank=1 size=2 sum=3"], out
        assert {line.split(" tag=")[1] for line in lines} == {tag}
        (port,) = {line.split("port=")[1].split()[0] for line in lines}
        ports.append(port)
    assert ports[0] != ports[1]


# -- the config ------------------------------------------------------------------------------------------------


def test_processes_zero_is_a_config_error_naming_the_setting(tiny_repo: Path) -> None:
    config = yaml.safe_load((tiny_repo / "tb.yaml").read_text())
    config["job"]["processes"] = 0
    (tiny_repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    line = next(i for i, text in enumerate((tiny_repo / "tb.yaml").read_text().splitlines(), 1)
                if "processes:" in text)
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=tiny_repo)
    assert proc.returncode == ExitCode.CONFIG_ERROR, proc.stdout + proc.stderr
    assert "job.processes" in proc.stderr and f"tb.yaml:{line}" in proc.stderr, proc.stderr
    assert not (tiny_repo / ".trainboard" / "runs").exists()
    bad = run_cli(["run", "tb.yaml", "--no-tui", "--set", "job.processes=1", "--set", "job.gpus=-1"], cwd=tiny_repo)
    assert bad.returncode == ExitCode.CONFIG_ERROR and "job.gpus" in bad.stderr, bad.stderr


# -- the example on two processes, end to end --------------------------------------------------------------------


def example_repo(base: Path, mlflow_db: Path, runner: dict | None = None) -> Path:
    """The bundled example as a project, set to its tiny setting on two processes."""
    repo = make_example_repo(base / "project")
    config = yaml.safe_load((repo / "sample_params.yaml").read_text())
    config["job"].update(processes=2, timeout_minutes=10,
                         setup=[f"{PY} examples/intents/make_data.py --out data/intents.csv"],
                         command=f"{PY} examples/intents/train.py")
    config["params"].update(TINY)
    config["compare"]["gates"] = {}
    config["github"]["publish"] = "never"
    if runner is not None:
        config["runner"] = runner
    (repo / "sample_params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "-c", "user.email=t@e.st", "-c", "user.name=T", "commit", "-qam", "two processes")
    (repo / ".trainboard").mkdir()
    shutil.copy(mlflow_db, repo / ".trainboard" / "mlflow.db")
    return repo


def assert_one_run_of_rank_0(repo: Path, proc: subprocess.CompletedProcess[str]) -> Path:
    """The run succeeded on two processes, with one MLflow run holding one value a step of each
    metric, and the outputs written once; the run's folder."""
    assert proc.returncode == ExitCode.OK, proc.stdout[-4000:] + proc.stderr[-2000:]
    (record,) = [r.data for r in RunStore(repo / ".trainboard").all()]
    assert record["status"] == "succeeded" and record["job_exit_code"] == 0
    run_dir = repo / ".trainboard" / "runs" / record["run_id"]
    log = (run_dir / "job.log").read_text().splitlines()
    assert log[0].startswith("$ exec ") and "torch.distributed.run --standalone --nproc-per-node 2" in log[0]
    said = Counter(log)
    assert said["2 processes (torchrun): process group gloo, rank 0 on cpu; rank 0 logs, reports and writes "
                "the outputs"] == 1
    for once in ("wrote metrics.json", "wrote confusion_matrix.png", "saved model and tokenizer to model/"):
        assert said[once] == 1, once
    progress = [line for line in log if line.startswith("trainboard:progress")]
    assert [line.split()[1] for line in progress] == ["step=0", "step=2", "step=4"]  # rank 0's, once each
    assert all(f"total={STEPS}" in line for line in progress)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_samples"] == 40 and 0.0 <= metrics["f1"] <= 1.0

    tracking = Tracking(f"sqlite:///{repo / '.trainboard' / 'mlflow.db'}", "intents-minilm")
    experiment = tracking.client.get_experiment_by_name("intents-minilm")
    runs = tracking.client.search_runs([experiment.experiment_id])
    assert [run.info.run_id for run in runs] == [record["mlflow"]["run_id"]]  # one MLflow run, not one a rank
    keys = set(runs[0].data.metrics)
    assert {"f1", "precision", "recall", "loss", "train_loss", "eval_loss", "epoch"} <= keys
    for key in keys:
        steps = [m.step for m in tracking.client.get_metric_history(runs[0].info.run_id, key)]
        assert len(steps) == len(set(steps)), (key, steps)  # rank 0's value only
    f1_steps = [m.step for m in tracking.client.get_metric_history(runs[0].info.run_id, "f1")]
    assert sorted(f1_steps) == [STEPS // 2, STEPS]  # the slice at mid-epoch, all held-out rows at its end
    assert runs[0].data.metrics["f1"] == pytest.approx(metrics["f1"])  # scored on every held-out row
    return run_dir


@pytest.mark.slow
def test_two_processes_on_the_local_runner(tmp_path: Path, empty_mlflow_db: Path) -> None:
    repo = example_repo(tmp_path, empty_mlflow_db)
    proc = run_cli(["run", "sample_params.yaml", "--no-tui"], cwd=repo, timeout=600)
    run_dir = assert_one_run_of_rank_0(repo, proc)
    assert (run_dir / "workspace" / "model" / "config.json").is_file()
    assert (run_dir / "confusion_matrix.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.xdist_group("processes_ssh")
def test_two_processes_on_the_ssh_runner(tmp_path: Path, empty_mlflow_db: Path, sshd: Sshd) -> None:
    (tmp_path / "ssh_config").touch()
    runner = {"kind": "ssh", "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
              "identity_file": str(sshd.client_key), "ssh_config": str(tmp_path / "ssh_config"),
              "known_hosts": str(sshd.known_hosts), "remote_dir": str(tmp_path / "remote"), "connect_timeout": 10}
    repo = example_repo(tmp_path, empty_mlflow_db, runner)
    proc = run_cli(["run", "sample_params.yaml", "--no-tui"], cwd=repo, timeout=600)
    run_dir = assert_one_run_of_rank_0(repo, proc)
    assert (run_dir / "confusion_matrix.png").stat().st_size > 1000  # collected from the host
    (model,) = (tmp_path / "remote").glob("*/workspace/model/config.json")  # one model, written on the host
    assert json.loads(model.read_text())["id2label"]
