"""Running the ``dataengine`` CLI in a child process, as a user would, and reading what it printed."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence

_PR_CAPBSET_DROP = 24
# CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: without them root, too, obeys file permissions.
_FILE_ACCESS_CAPABILITIES = (1, 2)


def _drop_file_access() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in _FILE_ACCESS_CAPABILITIES:
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    obey_permissions: bool = False,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``dataengine ARGS`` in a child process with ``env`` added to this one's environment.

    With ``obey_permissions`` a child of root loses the capabilities that let it read any file, so
    that a file without read permission is unreadable to it as it would be to any other user.
    """
    preexec: Callable[[], None] | None = None
    if obey_permissions and os.geteuid() == 0:
        preexec = _drop_file_access
    return subprocess.run(
        [sys.executable, "-c", "from dataengine.cli import main; main()", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
        check=False,
    )
