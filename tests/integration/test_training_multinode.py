"""Multi-node DDP: two hosts (network namespaces the test makes) train one model through a c10d rendezvous.

Each "host" is a network namespace joined to the other by a veth pair, running its own
``torchrun --nnodes 2 --nproc-per-node 1`` with gloo. Where namespaces cannot be made (no root, no
``ip``), the two nodes are two process groups on loopback instead, and the test says so in a warning.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from test_training import add_video

from dataengine.config import Settings
from dataengine.context import Context
from dataengine.errors import ConfigError, TrainingError
from dataengine.lineage.model_registry import get_model
from dataengine.storage import ObjectStore
from dataengine.training import build_dataset, train
from dataengine.training.distributed import weights_digest
from dataengine.training.manifest import resolve_dataset
from dataengine.training.multinode import Rendezvous, rendezvous_for
from dataengine.training.runner import _child_env, model_id_for, torchrun_command, training_args
from dataengine.vision import build_detector, checkpoint_key, load_checkpoint

pytestmark = pytest.mark.slow

RANK_LINE = re.compile(r"rank (\d+)/(\d+): weights sha256 ([0-9a-f]{64})")


@dataclass(frozen=True)
class Host:
    """One node: the command prefix that runs inside it, its address and its interface."""

    prefix: tuple[str, ...]
    address: str
    interface: str | None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


#: ``ip netns exec NAME`` mounts the files in /etc/netns/NAME over /etc's own.
NETNS_ETC = Path("/etc/netns")


def _name_service(namespace: str, address: str) -> None:
    """This host's name resolves to its own address, and no lookup waits for a DNS server it cannot reach."""
    etc = NETNS_ETC / namespace
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n{address} {socket.gethostname()}\n")
    (etc / "resolv.conf").write_text("options timeout:1 attempts:1\n")


@contextmanager
def two_hosts() -> Iterator[tuple[Host, Host]]:
    """Two network namespaces linked by a veth pair, deleted afterwards; loopback if they cannot be made."""
    token = secrets.token_hex(3)
    names, links = (f"de-{token}-a", f"de-{token}-b"), (f"de{token}a", f"de{token}b")
    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
    made: list[str] = []
    try:
        for name in names:
            _ip("netns", "add", name)
            made.append(name)
        _ip(
            "link",
            "add",
            links[0],
            "netns",
            names[0],
            "type",
            "veth",
            "peer",
            "name",
            links[1],
            "netns",
            names[1],
        )
        hosts = []
        for i, (name, link) in enumerate(zip(names, links, strict=True)):
            _ip("-n", name, "addr", "add", f"{subnet}.{i + 1}/30", "dev", link)
            _ip("-n", name, "link", "set", link, "up")
            _ip("-n", name, "link", "set", "lo", "up")
            _name_service(name, f"{subnet}.{i + 1}")
            hosts.append(Host(("ip", "netns", "exec", name), f"{subnet}.{i + 1}", link))
    except (OSError, subprocess.SubprocessError) as exc:
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        why = getattr(exc, "stderr", None) or exc
        warnings.warn(
            f"network namespaces unavailable ({str(why).strip()}): the two nodes run as two process groups "
            "on loopback instead of two hosts",
            stacklevel=2,
        )
        yield Host((), "127.0.0.1", None), Host((), "127.0.0.1", None)
        return
    try:
        yield hosts[0], hosts[1]
    finally:
        for name in names:  # deleting a namespace deletes its end of the veth pair, and so the pair
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)


def node_store(source: Path, target: Path) -> str:
    """A store sharing the source's frames and annotations, with its own ``models/`` and manifests.

    Each node writes into its own store, so the test sees which node wrote the checkpoint.
    """
    target.mkdir()
    for entry in source.iterdir():
        if entry.name not in ("models", "datasets"):
            (target / entry.name).symlink_to(entry)
    for manifest in (source / "datasets").rglob("manifest.jsonl"):
        copy = target / manifest.relative_to(source)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(manifest.read_text().replace(f"file://{source}/", f"file://{target}/"))
    return f"file://{target}"


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    """Three synthetic videos of 2 clips x 3 labelled frames, as a dataset version on SQLite."""
    root = tmp_path_factory.mktemp("multinode")
    settings = Settings(
        database_url=f"sqlite:///{root / 'lineage.db'}",
        storage_url=f"file://{root / 'store'}",
        device="cpu",
        train_warm_start=False,
        train_epochs=1,
    )
    ctx = Context.create(settings, run_id="test/multinode")
    for name in ("node-1", "node-2", "node-3"):
        add_video(ctx, name)
    build_dataset(ctx)
    yield ctx
    ctx.close()


def test_two_hosts_train_one_model_and_rank_0_alone_writes_it(small_dataset: Context, tmp_path: Path) -> None:
    ctx = small_dataset
    with ctx.db.session() as session:
        row = resolve_dataset(session, None)
    args = training_args(ctx, row, nproc=1, epochs=1)
    model_id = model_id_for(row.id, args)
    source = Path(ctx.store.root)
    stores = [node_store(source, tmp_path / f"node-{i}") for i in (0, 1)]
    with two_hosts() as hosts:
        endpoint = f"{hosts[0].address}:{_free_port()}"
        jobs = []
        for node, (host, store_url) in enumerate(zip(hosts, stores, strict=True)):
            rdzv = Rendezvous("2", endpoint, model_id, "c10d", 120, node, host.address)
            command = torchrun_command(
                args, store_url=store_url, manifest_uri=f"{store_url}/{ctx.store.key_of(row.manifest_uri)}",
                dataset_id=row.id, model_id=model_id, device="cpu", rdzv=rdzv,
            )  # fmt: skip
            env = {**_child_env(ctx, 1), "OMP_NUM_THREADS": "1"}
            if host.interface:
                env["GLOO_SOCKET_IFNAME"] = host.interface
            log = (tmp_path / f"node-{node}.log").open("w+")
            jobs.append((subprocess.Popen([*host.prefix, *command], env=env, stdout=log, stderr=log), log))
        outputs = []
        for job, log in jobs:
            code = job.wait(timeout=600)
            log.seek(0)
            outputs.append(log.read())
            assert code == 0, outputs[-1][-3000:]

    ranks = [{int(m[1]): m[3] for m in RANK_LINE.finditer(out) if m[2] == "2"} for out in outputs]
    assert sorted(r for node in ranks for r in node) == [0, 1]  # one rank on each host, world size 2
    digests = {d for node in ranks for d in node.values()}
    assert len(digests) == 1  # after the last step both ranks hold the same weights
    writer = next(i for i, node in enumerate(ranks) if 0 in node)
    written = [(tmp_path / f"node-{i}" / checkpoint_key(model_id)).exists() for i in (0, 1)]
    assert written == [i == writer for i in (0, 1)]  # rank 0's host alone wrote the checkpoint
    assert not (tmp_path / f"node-{1 - writer}" / "models").exists()
    config, state_dict = load_checkpoint(ObjectStore(stores[writer]), model_id)
    model = build_detector(
        config["arch"],
        num_classes=len(config["classes"]),
        min_size=config["min_size"],
        max_size=config["max_size"],
    )
    model.load_state_dict(state_dict)
    assert weights_digest(model) in digests  # the checkpoint holds those weights


def test_a_second_worker_joins_the_job_as_node_1_and_node_0_registers_the_model(
    small_dataset: Context, tmp_path: Path
) -> None:
    """What the one_click_train tasks ``train`` and ``train_node_2`` do on two workers, on loopback."""
    port = _free_port()
    update = {"train_nnodes": "2", "train_rdzv_endpoint": f"127.0.0.1:{port}", "train_rdzv_timeout": 120.0}
    ctx = replace(small_dataset, settings=small_dataset.settings.model_copy(update=update))
    env = {
        **os.environ,
        "DATAENGINE_DATABASE_URL": ctx.settings.database_url,
        "DATAENGINE_STORAGE_URL": ctx.settings.storage_url,
        "DATAENGINE_DEVICE": "cpu",
        "DATAENGINE_TRAIN_WARM_START": "false",
        "DATAENGINE_TRAIN_NNODES": "2",
        "DATAENGINE_TRAIN_RDZV_ENDPOINT": f"127.0.0.1:{port}",
        "OMP_NUM_THREADS": "1",
    }
    cli = str(Path(sys.executable).parent / "dataengine")
    follower = subprocess.Popen(
        [cli, "train", "--nproc", "1", "--epochs", "1", "--node-rank", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        result = train(ctx, nproc=1, epochs=1, node_rank=0)
    finally:
        out, _ = follower.communicate(timeout=300)

    assert follower.returncode == 0, out[-3000:]
    assert out.strip().splitlines()[-1] == result.model_id  # both nodes trained the same model
    record = ctx.store.read_json(f"models/{result.model_id}/training.json")
    assert record["world_size"] == 2
    with ctx.db.session() as session:
        model = get_model(session, result.model_id)
    assert model.metrics["train"]["world_size"] == 2
    assert model.checkpoint_uri == ctx.store.uri(checkpoint_key(result.model_id))


def test_a_rendezvous_that_never_completes_times_out_with_a_clear_message(small_dataset: Context) -> None:
    update = {
        "train_nnodes": "2",
        "train_rdzv_endpoint": f"127.0.0.1:{_free_port()}",
        "train_rdzv_timeout": 8.0,
        "train_epochs": 2,  # another recipe: a model of the tests above must not be returned instead
    }
    ctx = replace(small_dataset, settings=small_dataset.settings.model_copy(update=update))
    outcome: list[BaseException] = []

    def node_0() -> None:
        try:
            train(ctx, nproc=1, node_rank=0)
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=node_0, daemon=True)
    thread.start()
    thread.join(timeout=240)
    waited = time.monotonic() - started

    assert not thread.is_alive(), "node 0 still waits for node 2 after 240 s"
    (error,) = outcome
    assert isinstance(error, TrainingError)
    message = str(error).splitlines()[0]
    assert "did not complete within 8 s" in message
    assert "fewer than 2 nodes joined" in message
    assert waited < 120  # 8 s of waiting plus torchrun's start and exit


def test_several_nodes_need_a_rendezvous_endpoint_and_a_valid_count() -> None:
    settings = Settings(train_nnodes="2:4")
    with pytest.raises(ConfigError, match="DATAENGINE_TRAIN_RDZV_ENDPOINT=host:port"):
        rendezvous_for(settings, "m-1")
    with pytest.raises(ValueError, match="MIN <= MAX"):
        Settings(train_nnodes="3:2")
    with pytest.raises(ValueError, match="a count like 2"):
        Settings(train_nnodes="two")
    assert rendezvous_for(Settings(), "m-1") is None
    static = rendezvous_for(
        Settings(train_nnodes="2", train_rdzv_endpoint="gpu-1:29400", train_rdzv_backend="static"),
        "m-1",
        node_rank=1,
    )
    assert static is not None
    assert static.torchrun_args()[:8] == [
        "--nnodes", "2", "--rdzv-backend", "static", "--rdzv-endpoint", "gpu-1:29400", "--rdzv-id", "m-1",
    ]  # fmt: skip
    assert static.torchrun_args()[8:14] == [
        "--node-rank",
        "1",
        "--master-addr",
        "gpu-1",
        "--master-port",
        "29400",
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
