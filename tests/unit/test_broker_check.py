"""The broker check behind `dataengine-cluster trigger`: a Redis broker must answer, not just accept."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from dataengine.airflow.cluster_cli import broker_reachable


@contextmanager
def listener(reply: bytes | None) -> Iterator[int]:
    """A TCP server on a free port that answers every connection with `reply` (None: hangs up)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.recv(64)
                if reply is not None:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def test_a_redis_server_that_answers_ping_is_reachable() -> None:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    assert broker_reachable("redis://127.0.0.1:6379/0") is None


def test_a_server_that_refuses_auth_still_counts_as_a_reachable_redis() -> None:
    with listener(b"-NOAUTH Authentication required.\r\n") as port:
        assert broker_reachable(f"redis://127.0.0.1:{port}/0") is None


def test_a_port_that_accepts_and_hangs_up_is_not_a_reachable_broker() -> None:
    with listener(None) as port:
        problem = broker_reachable(f"redis://127.0.0.1:{port}/0", timeout=2)
    assert problem == "the connection was closed without a reply"


def test_a_port_that_answers_something_else_is_named() -> None:
    with listener(b"HTTP/1.1 400 Bad Request\r\n") as port:
        problem = broker_reachable(f"redis://127.0.0.1:{port}/0", timeout=2)
    assert problem == "not a Redis reply: b'HTTP/1.1 400 Bad Req'"


def test_a_closed_port_is_unreachable_with_the_reason() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    problem = broker_reachable(f"redis://127.0.0.1:{port}/0", timeout=2)
    assert problem is not None
    assert problem.startswith("ConnectionRefusedError")


def test_an_amqp_broker_only_needs_to_accept() -> None:
    with listener(None) as port:
        assert broker_reachable(f"amqp://guest@127.0.0.1:{port}//") is None
