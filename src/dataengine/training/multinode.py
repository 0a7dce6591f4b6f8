"""Several machines in one training job: torchrun's rendezvous options from the settings.

One node (``train_nnodes = "1"``) runs ``torchrun --standalone``. Several nodes meet at a c10d rendezvous
store (``train_rdzv_endpoint``, on the first node) under a run id both derive from the model id, so two
Airflow workers that start the same ``train`` task for the same dataset join the same job. Node 0 (the
launcher) registers the model; the others only add their processes to the job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dataengine.config import Settings
from dataengine.errors import ConfigError

#: How long a node keeps trying to reach the rendezvous store (TCPStore reads) before giving up.
READ_TIMEOUT_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Rendezvous:
    """Where and how the nodes of one job meet."""

    nnodes: str
    endpoint: str
    run_id: str
    backend: str
    timeout: float
    node_rank: int
    local_addr: str | None

    @property
    def min_nodes(self) -> int:
        """The nodes the job waits for before it starts."""
        return int(self.nnodes.partition(":")[0])

    def torchrun_args(self) -> list[str]:
        """torchrun's options for this node; they replace ``--standalone``."""
        args = [
            "--nnodes", self.nnodes, "--rdzv-backend", self.backend, "--rdzv-endpoint", self.endpoint,
            "--rdzv-id", self.run_id,
        ]  # fmt: skip
        if self.backend == "static":
            # The static backend has no join timeout of its own: the store's timeout bounds the wait.
            host, _, port = self.endpoint.rpartition(":")
            args += ["--node-rank", str(self.node_rank), "--master-addr", host, "--master-port", port]
            args += ["--rdzv-conf", f"timeout={int(self.timeout)}"]
        else:
            conf = f"join_timeout={int(self.timeout)},read_timeout={READ_TIMEOUT_SECONDS}"
            if self.local_addr and self.local_addr == self.endpoint.rpartition(":")[0]:
                # torch guesses whether to host the store from the hostname's addresses, which miss
                # secondary interfaces: the node at the endpoint's address says so itself.
                conf += ",is_host=1"
            args += ["--rdzv-conf", conf]
        if self.local_addr:
            args += ["--local-addr", self.local_addr]
        return args


def rendezvous_for(settings: Settings, run_id: str, *, node_rank: int | None = None) -> Rendezvous | None:
    """The job's rendezvous, or None when it runs on this machine alone."""
    if settings.train_nnodes == "1":
        return None
    endpoint = settings.train_rdzv_endpoint
    if not endpoint or not re.fullmatch(r"[^\s:]+:\d+", endpoint):
        raise ConfigError(
            f"DATAENGINE_TRAIN_NNODES={settings.train_nnodes} needs DATAENGINE_TRAIN_RDZV_ENDPOINT="
            f"host:port, the rendezvous store every node reaches (got {endpoint!r})"
        )
    return Rendezvous(
        nnodes=settings.train_nnodes,
        endpoint=endpoint,
        run_id=run_id,
        backend=settings.train_rdzv_backend,
        timeout=settings.train_rdzv_timeout,
        node_rank=settings.train_node_rank if node_rank is None else node_rank,
        local_addr=settings.train_local_addr,
    )


def failure_hint(stderr: str, rdzv: Rendezvous | None) -> str | None:
    """A one-line explanation of a multi-node failure found in torchrun's stderr, if it is one."""
    if rdzv is None:
        return None
    if "RendezvousTimeoutError" in stderr:
        return (
            f"the rendezvous at {rdzv.endpoint} did not complete within {rdzv.timeout:.0f} s: fewer than "
            f"{rdzv.min_nodes} nodes joined job {rdzv.run_id}. Start the same train task on every node "
            "(DATAENGINE_TRAIN_NNODES and DATAENGINE_TRAIN_RDZV_ENDPOINT equal everywhere), or lower "
            "DATAENGINE_TRAIN_NNODES"
        )
    if "RendezvousConnectionError" in stderr or "RendezvousClosedError" in stderr:
        return (
            f"this node could not reach the rendezvous store at {rdzv.endpoint}: is the first node up and "
            "its port open to this one?"
        )
    return None
