"""Pieces of LocalPlatform on the real thing: loopback sockets, and nginx checking its config."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from ordermesh.rollout.local import connections_to
from ordermesh.rollout.machine import StepFailed
from ordermesh.rollout.nginx import Nginx, render
from tests.servers.common import unavailable


def test_connections_to_a_port_are_its_established_clients():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert connections_to(port) == 0, "a listening socket is no connection"
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        assert connections_to(port) == 1
        second = socket.create_connection(("127.0.0.1", port))
        other, _ = server.accept()
        assert connections_to(port) == 2
        for s in (client, accepted, second, other):
            s.close()
        assert connections_to(port) == 0


@pytest.fixture
def nginx(tmp_path: Path) -> Nginx:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        raise unavailable("nginx is needed: apt-get install nginx-light") from None
    return Nginx(tmp_path / "edge", binary)


def test_the_rendered_config_is_one_nginx_accepts(nginx: Nginx):
    nginx.prefix.mkdir()
    nginx.write(render("127.0.0.1:50051", "127.0.0.1:50050", 50061, 50062, nginx.prefix))
    nginx.check()
    text = nginx.config.read_text()
    assert "server 127.0.0.1:50061;" in text.split("upstream gateway_preview")[0]
    assert "grpc_pass grpc://gateway_live;" in text
    assert "listen 127.0.0.1:50050 http2;" in text


def test_a_config_nginx_refuses_fails_with_its_message(nginx: Nginx):
    nginx.prefix.mkdir()
    nginx.write("events {}\nhttp { server { listen 127.0.0.1:1 http2; grpc_pass; } }\n")
    with pytest.raises(StepFailed, match="nginx could not check its configuration"):
        nginx.check()


def test_reload_without_a_running_nginx_says_how_to_start_it(nginx: Nginx):
    nginx.prefix.mkdir()
    with pytest.raises(StepFailed, match=r"nginx is not running .* start it with: .*daemon off;"):
        nginx.reload()
