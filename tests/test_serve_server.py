"""``spanqa serve``'s listening socket (spanqa.serve.server.bind): the port is taken, listening,
before Ray starts, and a port already in use is a one-line usage error."""

from __future__ import annotations

import errno
import socket

import pytest

from spanqa.errors import UsageError
from spanqa.serve.server import bind


def test_the_port_is_listening_before_ray_starts():
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        # Ray's processes bind with SO_REUSEADDR while they start: a socket that was only bound
        # would let them take the port (then uvicorn's listen failed, 'Address already in use').
        other = socket.socket()
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with other, pytest.raises(OSError) as err:
            other.bind(("127.0.0.1", port))
        assert err.value.errno == errno.EADDRINUSE
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # accepted into the backlog until uvicorn takes the socket
    finally:
        sock.close()


def test_a_port_in_use_is_one_line_naming_it():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(UsageError) as err:
            bind("127.0.0.1", port)
    assert str(err.value) == f"cannot listen on 127.0.0.1:{port} (Address already in use); choose another --port or --host"
