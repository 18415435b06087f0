"""A study on a two-node Ray cluster whose nodes share no disk, on one machine.

The head node runs in this machine's mount namespace; the second node runs in its own
(``unshare -m``), with a private tmpfs over its scratch folder (its ``TMPDIR``, where runs train)
and over the cluster's Ray temp folder, so neither is visible to anyone else. The model and the
study's storage sit in a folder both can reach (under the checkout). Each node offers one
``slot`` and each run asks for one, so the runs land on both nodes. The worker node is killed
mid-run; Ray retries its run on the head, which resumes it from the checkpoint in storage. The
study's results must equal the same study on the local executor, every run recorded once.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import save_random_model

pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from rewardgym.evaluation.study import run_study  # noqa: E402

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))
REPO = Path(__file__).resolve().parents[1]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _unshare_works(folder: Path) -> str | None:
    """None when a private mount namespace with a tmpfs can be made here, else why not."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", folder],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"unshare -m refused here ({probe.stderr.strip() or probe.returncode})"
    return None


def _namespace_pids(leader: int) -> list[int]:
    """Every process in the mount namespace of ``leader`` (the second node, all of it)."""
    target = os.readlink(f"/proc/{leader}/ns/mnt")
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "mnt") == target:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.fixture
def cluster():
    name = uuid.uuid4().hex[:8]
    shared = REPO / ".cache" / f"cluster-{name}"
    # short paths: Ray's unix sockets live in its temp folder
    temp = Path(tempfile.gettempdir())
    ray_tmp, scratch = temp / f"rg-{name}-ray", temp / f"rg-{name}-node"
    for folder in (shared, ray_tmp, scratch):
        folder.mkdir(parents=True)
    why = _unshare_works(scratch)
    if why is not None:
        pytest.skip(why)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    gcs, *ports = _free_ports(8)
    common = ["--num-cpus", "1", "--resources", '{"slot": 1}', "--disable-usage-stats"]
    head = [RAY, "start", "--head", "--port", str(gcs), "--include-dashboard", "false",
            "--temp-dir", str(ray_tmp), *common]  # fmt: skip
    subprocess.run(head, env=env, check=True, capture_output=True)
    node = (
        f"mount -t tmpfs tmpfs {scratch} && mount -t tmpfs tmpfs {ray_tmp} && "
        f"TMPDIR={scratch} exec {RAY} start --address 127.0.0.1:{gcs} --block "
        + " ".join(common).replace('{"slot": 1}', "'{\"slot\": 1}'")
        + f" --dashboard-agent-listen-port {ports[0]} --dashboard-agent-grpc-port {ports[1]}"
        f" --metrics-export-port {ports[2]} --runtime-env-agent-port {ports[3]}"
        f" --node-manager-port {ports[4]} --object-manager-port {ports[5]}"
        f" --min-worker-port {ports[6]} --max-worker-port {ports[6] + 50}"
    )
    worker = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", node],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_nodes(gcs, env, 2)
        yield {"address": f"127.0.0.1:{gcs}", "worker": worker, "shared": shared, "env": env}
    finally:
        for pid in _namespace_pids(worker.pid) if worker.poll() is None else []:
            with _quiet():
                os.kill(pid, signal.SIGKILL)
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True)
        for folder in (shared, ray_tmp, scratch):
            shutil.rmtree(folder, ignore_errors=True)


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is ProcessLookupError


def _wait_for_nodes(gcs: int, env: dict, n: int, timeout_s: float = 90) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        out = subprocess.run(
            [RAY, "status", "--address", f"127.0.0.1:{gcs}"], env=env, capture_output=True,
            text=True,
        )  # fmt: skip
        if out.stdout.count(" node_") >= n:
            return
        time.sleep(1)
    raise AssertionError(f"the cluster did not reach {n} nodes: {out.stdout}{out.stderr}")


def _study(model: str, **options) -> dict:
    return {
        "name": "cluster",
        "tasks": ["arithmetic"],
        "model": model,
        "seeds": [0],
        "baseline": "task_only",
        "schemes": {"task_only": "task_only", "speed_only": "speed_only"},
        "train": {"updates": 30, "prompts_per_update": 4, "group_size": 2, "max_new_tokens": 6,
                  "eval_every": 10, "eval_examples": 8, "checkpoint_every": 2},
        "evaluation": {"n_examples": 12, "severities": [0.1], "noise": ["char_drop"],
                       "max_new_tokens": 6},
        **options,
    }  # fmt: skip


def _figures(results: dict) -> dict:
    runs = {r["key"]: {k: v for k, v in r.items() if k != "wall_s"} for r in results["runs"]}
    return {"runs": runs, "summary": results["summary"], "beats": results["p_beats_baseline"]}


def test_a_study_on_nodes_that_share_no_disk(cluster, tmp_path) -> None:
    import threading

    from rewardgym.envs.tasks import make_task

    shared = cluster["shared"]
    texts = [f"{ex.prompt} {ex.reference}" for ex in make_task("arithmetic").split("train")[:2000]]
    model = str(save_random_model(shared / "model", texts))
    storage = shared / "storage"
    options = {"executor": "ray", "ray_address": cluster["address"], "storage": str(storage),
               "ray_resources": {"slot": 1}}  # fmt: skip
    killed = threading.Event()

    def kill_the_worker_mid_run() -> None:
        """Once a run on the worker node has a complete checkpoint in storage, kill the node."""
        worker_pid = cluster["worker"].pid
        deadline = time.time() + 240
        while time.time() < deadline and not killed.is_set():
            for placements in storage.glob("runs/*/*/*/placements.jsonl"):
                run = placements.parent
                done = list(run.glob("checkpoints/*/COMPLETE"))
                on_worker = _on_node(placements, worker_pid)
                finished = any((storage / "records").glob(f"{run.parts[-3]}__*"))
                if on_worker and done and not finished:
                    for pid in _namespace_pids(worker_pid):
                        with _quiet():
                            os.kill(pid, signal.SIGKILL)
                    killed.set()
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_the_worker_mid_run, daemon=True)
    killer.start()
    out = tmp_path / "cluster"
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump(_study(model, **options)), encoding="utf-8")
    # the driver is the command line, with the cluster's token in its environment
    study = [sys.executable, "-m", "rewardgym", "study", str(config), "--out", str(out)]
    first = subprocess.run(study, env=cluster["env"], capture_output=True, text=True)
    killer.join(timeout=5)
    assert first.returncode == 0, first.stderr[-3000:]
    assert killed.is_set(), "no run reached a checkpoint on the worker node"
    rerun = subprocess.run(study, env=cluster["env"], capture_output=True, text=True)
    assert rerun.returncode == 0 and "2 runs, 2 already done" in rerun.stderr, rerun.stderr
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    local = run_study(_study(model), out=tmp_path / "local", log=lambda line: None)
    assert _figures(result) == _figures(local.results)
    assert sorted(r["key"] for r in result["runs"]) == [
        "speed_only/arithmetic/0", "task_only/arithmetic/0"
    ]  # fmt: skip
    attempts = {
        r["key"]: [json.loads(line) for line in (out / r["run_dir"] / "placements.jsonl").open()]
        for r in result["runs"]
    }
    nodes = {a["ray_node_id"] for runs in attempts.values() for a in runs}
    assert len(nodes) == 2, attempts  # the runs ran on both nodes
    (resumed,) = [runs for runs in attempts.values() if len(runs) == 2]
    assert resumed[0]["resumed_from_update"] is None
    assert resumed[1]["resumed_from_update"] >= 2  # from the checkpoint in storage
    assert resumed[0]["ray_node_id"] != resumed[1]["ray_node_id"]
    for record in result["runs"]:  # every run came home whole
        metrics = (out / record["run_dir"] / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(m)["update"] for m in metrics] == list(range(30))


def _on_node(placements: Path, worker_pid: int) -> bool:
    """Whether the latest attempt of this run is on the worker node (its tasks live in the
    worker's mount namespace)."""
    try:
        last = json.loads(placements.read_text().splitlines()[-1])
    except (IndexError, ValueError):
        return False
    return last.get("pid") in _namespace_pids(worker_pid)
