"""The first process of a pod sandbox (standard library only): plumbing, then the container.

The kubelet stand-in (:mod:`tests.install.kubelet`) starts it inside bubblewrap, in the pod's
own network namespace, as ``python podinit.py CONFIG.json``. It

* forwards ``127.0.0.1:PORT`` inside the pod to a Unix socket that the kubelet relays to the
  same port on the host (how a pod reaches the API server: ``KUBERNETES_SERVICE_HOST``
  ``127.0.0.1`` and the emulator's port, as a kubeconfig pointing to ``127.0.0.1`` does),
* exposes each ``containerPort`` on a Unix socket the kubelet connects to (readiness and
  liveness probes, a test reading ``/metrics``): the pod's own loopback is not the host's,
  so two replicas serving the same ports do not collide,
* runs the container's command with its environment, passes SIGTERM/SIGINT on, and exits with
  its exit code (128 + N when signal N ended it; 128 with ``start-error`` written when the
  command cannot be started, as a container runtime reports a ``StartError``).

With no command it is the pod's "pause" process: it holds the network namespace that the
pod's containers join (``nsenter --net``), so they share ``localhost`` as in a real pod.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

BUFFER = 65536


def pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes from ``source`` to ``target`` until EOF, then half-close ``target``."""
    try:
        while True:
            data = source.recv(BUFFER)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def splice(client: socket.socket, upstream: socket.socket) -> None:
    """Relay both directions between two connected sockets; close both when done."""
    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
    for sock in (client, upstream):
        with contextlib.suppress(OSError):
            sock.close()


def serve(listener: socket.socket, connect: Any) -> None:
    """Accept connections forever; each is spliced to a fresh ``connect()`` socket."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = connect()
        except OSError:
            with contextlib.suppress(OSError):
                client.close()
            continue
        threading.Thread(target=splice, args=(client, upstream), daemon=True).start()


def unix_connector(path: str) -> Any:
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return sock

    return connect


def tcp_connector(host: str, port: int) -> Any:
    def connect() -> socket.socket:
        return socket.create_connection((host, port), timeout=5)

    return connect


def start_forwarders(config: dict[str, Any]) -> None:
    for item in config.get("inbound", []):  # pod 127.0.0.1:port -> host (via a Unix socket)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(item["port"])))
        listener.listen(64)
        connect = unix_connector(item["unix"])
        threading.Thread(target=serve, args=(listener, connect), daemon=True).start()
    for item in config.get("exposed", []):  # a Unix socket -> the pod's 127.0.0.1:port
        with contextlib.suppress(FileNotFoundError):
            os.unlink(item["unix"])
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(item["unix"])
        listener.listen(64)
        connect = tcp_connector("127.0.0.1", int(item["port"]))
        threading.Thread(target=serve, args=(listener, connect), daemon=True).start()


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    start_forwarders(config)
    Path(config["ready_file"]).write_text("ok")
    if not config["argv"]:  # the pod's "pause" process: it only holds the network namespace
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: sys.exit(0))
        while True:
            signal.pause()
    try:
        child = subprocess.Popen(config["argv"], env=config["env"], cwd=config.get("cwd") or "/")
    except OSError as exc:
        Path(config["start_error_file"]).write_text(
            f"failed to create containerd task: exec: {config['argv'][0]!r}: {exc.strerror}"
        )
        return 128

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    code = child.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
