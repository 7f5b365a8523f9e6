"""Run a container's process the way a container runtime would, with bubblewrap.

Each sandbox gets its own mount, PID, IPC, UTS and network namespaces (``bwrap``), so paths and
ports behave as in a container without rewriting anything the program reads:

* the root file system is the host's (the "image": system Python, the repository and its
  virtual environment), bound read-only entry by entry on a tmpfs root; directories that hold
  host state (``/tmp``, ``/run``, ``/mnt``, ``/home``, ``/root``, ...) are empty, as in a fresh
  image. Each volume is bound at its mount path (directories on the way are created, so
  ``/etc/kubetune`` shows the spec ConfigMap next to the host's ``/etc`` files), and
  ``readOnlyRootFilesystem`` remounts the root read-only, leaving only the volumes writable;
* ``runAsUser``/``runAsGroup`` become the process's ids in a user namespace (no capabilities);
* the network namespace has only a loopback: :mod:`tests.install.podinit` forwards the listed
  host ports (the API server) into it and exposes the container's ports on Unix sockets, so
  two replicas serving ``:8080`` do not collide and nothing reaches other networks.

``host_root=True`` keeps the host's whole file system (a process started outside a cluster,
e.g. ``kubetune operator`` with a kubeconfig) and only isolates its network the same way.

Every sandbox dies with the process that started it (``--die-with-parent``); :meth:`kill`
ends the whole process group.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.install import podinit
from tests.install.images import BASE_PREFIX, REPO, VENV

PODINIT = Path(podinit.__file__).resolve()
INNER_STATE = "/.kubelet"
# Top-level host directories that hold host state rather than image content: empty in pods.
EMPTY_IN_IMAGE = frozenset(
    {"/tmp", "/run", "/mnt", "/media", "/home", "/root", "/srv", "/lost+found", "/var/tmp"}
)
SPECIAL = frozenset({"/proc", "/dev", "/sys"})


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here."""


def bwrap_path() -> str:
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is required by tests/install: apt-get install -y bubblewrap"
        )
    return found


@dataclass(frozen=True)
class Mount:
    """A host path bound at ``dest`` inside the sandbox."""

    dest: str
    source: Path
    read_only: bool = False


@dataclass
class SandboxSpec:
    """What to run, and how the sandbox around it looks."""

    argv: Sequence[str]
    env: dict[str, str]
    workdir: str = "/"
    mounts: Sequence[Mount] = ()
    read_only_root: bool = False
    uid: int | None = None
    gid: int | None = None
    hostname: str = "pod"
    host_ports: Sequence[int] = ()  # pod 127.0.0.1:PORT -> host 127.0.0.1:PORT
    exposed_ports: Sequence[int] = ()  # the container's ports, reachable through Unix sockets
    host_root: bool = False
    # join the network namespace of this process (the pod's pause sandbox) instead of a new one
    netns_pid: int | None = None
    image_paths: Sequence[Path] = field(default_factory=lambda: [REPO, VENV, BASE_PREFIX])


def canonical(dest: str) -> str:
    """``dest`` with the symlinks of its existing parents resolved on the host's image
    (``/var/run/secrets/...`` -> ``/run/secrets/...``), as a mount inside the image resolves."""
    parent, name = os.path.split(os.path.normpath(dest))
    return os.path.join(os.path.realpath(parent), name) if name else "/"


def _ancestors(path: str) -> list[str]:
    parts = Path(path).parts[1:]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def rootfs_args(
    mounts: Sequence[Mount], image_paths: Iterable[Path], read_only_root: bool
) -> list[str]:
    """bwrap arguments of a container's file system (see the module docstring)."""
    binds = [Mount(canonical(m.dest), m.source, m.read_only) for m in mounts]
    image = [Mount(str(p), p, True) for p in image_paths if p.exists()]
    dests = {m.dest for m in binds}
    # image paths inside a directory that is empty in the image (a checkout under /tmp) are
    # bound explicitly, also inside a volume mounted there: deeper binds go on top
    extra = [
        m
        for m in image
        if m.dest not in dests and any(a in EMPTY_IN_IMAGE for a in [*_ancestors(m.dest), m.dest])
    ]
    binds += extra
    dests |= {m.dest for m in extra}
    needed = {a for d in dests for a in _ancestors(d)} - SPECIAL
    args = ["--proc", "/proc", "--dev", "/dev", "--ro-bind", "/sys", "/sys"]

    def visit(directory: str) -> None:
        empty = directory in EMPTY_IN_IMAGE or not os.path.isdir(directory)
        if not empty:
            for child in sorted(os.listdir(directory)):
                path = os.path.join(directory, child)
                if path in needed or path in dests or path in SPECIAL:
                    continue
                if path in EMPTY_IN_IMAGE and not os.path.islink(path):
                    args.extend(["--dir", path])
                elif os.path.islink(path):
                    args.extend(["--symlink", os.readlink(path), path])
                else:
                    args.extend(["--ro-bind", path, path])
        for sub in sorted(n for n in needed if os.path.dirname(n) == directory):
            args.extend(["--dir", sub])
            visit(sub)

    visit("/")
    if "/dev/shm" not in dests:
        args.extend(["--tmpfs", "/dev/shm"])
    for mount in sorted(binds, key=lambda m: (m.dest.count("/"), m.dest)):
        flag = "--ro-bind" if mount.read_only else "--bind"
        args.extend([flag, str(mount.source), mount.dest])
    if read_only_root:
        args.extend(["--remount-ro", "/"])
    return args


class HostRelay:
    """Unix sockets relayed to host TCP ports: how sandboxes reach ``127.0.0.1:PORT``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._listeners: dict[int, socket.socket] = {}

    def socket_for(self, port: int) -> Path:
        path = self.directory / f"host-{port}.sock"
        with self._lock:
            if port not in self._listeners:
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(str(path))
                listener.listen(128)
                self._listeners[port] = listener
                connect = podinit.tcp_connector("127.0.0.1", port)
                threading.Thread(
                    target=podinit.serve, args=(listener, connect), daemon=True
                ).start()
        return path

    def close(self) -> None:
        with self._lock:
            for listener in self._listeners.values():
                with contextlib.suppress(OSError):
                    listener.close()
            self._listeners.clear()


class Sandbox:
    """One running sandbox (a container's process and the plumbing around it)."""

    def __init__(
        self, spec: SandboxSpec, relay: HostRelay, state_dir: Path, output: IO[bytes] | int
    ) -> None:
        self.spec = spec
        self.relay = relay
        self.state_dir = state_dir
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    # --- paths ----------------------------------------------------------------------------

    @property
    def inner_state(self) -> str:
        return str(self.state_dir) if self.spec.host_root else INNER_STATE

    def port_socket(self, port: int) -> Path:
        """The host path of the Unix socket that reaches the container's ``port``."""
        return self.state_dir / "sock" / str(port)

    @property
    def start_error(self) -> str | None:
        path = self.state_dir / "start-error"
        return path.read_text() if path.exists() else None

    # --- lifecycle --------------------------------------------------------------------------

    def command(self) -> list[str]:
        spec = self.spec
        (self.state_dir / "sock").mkdir(parents=True, exist_ok=True)
        inner = self.inner_state
        config = {
            "argv": list(spec.argv),
            "env": spec.env,
            "cwd": spec.workdir,
            "ready_file": f"{inner}/ready",
            "start_error_file": f"{inner}/start-error",
            "inbound": [
                {"port": port, "unix": f"{inner}/host/{self.relay.socket_for(port).name}"}
                for port in spec.host_ports
            ],
            "exposed": [
                {"port": port, "unix": f"{inner}/sock/{port}"} for port in spec.exposed_ports
            ],
        }
        (self.state_dir / "config.json").write_text(json.dumps(config))
        args = [bwrap_path(), "--die-with-parent", "--unshare-pid"]
        if spec.netns_pid is not None:
            args = ["nsenter", f"--net=/proc/{spec.netns_pid}/ns/net", "--", *args]
        else:
            args.append("--unshare-net")
        args += ["--unshare-ipc", "--unshare-uts", "--hostname", spec.hostname[:63]]
        if spec.host_root:
            args += ["--dev-bind", "/", "/", "--proc", "/proc"]
            args += ["--bind", str(self.relay.directory), f"{inner}/host"]
        else:
            if spec.uid is not None:
                gid = spec.gid if spec.gid is not None else spec.uid
                args += ["--unshare-user", "--uid", str(spec.uid), "--gid", str(gid)]
            mounts = [
                *spec.mounts,
                Mount(INNER_STATE, self.state_dir),
                Mount(f"{INNER_STATE}/host", self.relay.directory),
            ]
            args += rootfs_args(mounts, spec.image_paths, spec.read_only_root)
        args += ["--chdir", spec.workdir or "/"]
        args += ["--", sys.executable, "-S", str(PODINIT), f"{inner}/config.json"]
        return args

    def start(self) -> None:
        command = self.command()
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=self.output,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def poll(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the plumbing is up (the container's process is being started)."""
        deadline = time.monotonic() + timeout
        while not (self.state_dir / "ready").exists():
            if self.poll() is not None:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the sandbox did not start")
            time.sleep(0.01)

    def terminate(self, grace: float) -> int | None:
        """SIGTERM to the container's process (through podinit), SIGKILL after ``grace``."""
        if self.process is None or self.process.poll() is not None:
            return self.poll()
        init = self._podinit_pid()
        if init is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGTERM)
        try:
            return self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.poll()

    def kill(self) -> None:
        """SIGKILL every process of the sandbox."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)

    def init_pid(self, timeout: float = 10.0) -> int:
        """The host PID of podinit inside the sandbox (to join its namespaces)."""
        self.wait_ready(timeout)
        pid = self._podinit_pid()
        if pid is None:
            raise RuntimeError(f"the sandbox exited early ({self.poll()})")
        return pid

    def _podinit_pid(self) -> int | None:
        import psutil

        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return None
        for child in children:  # not bwrap's own processes, whose command lines hold it too
            with contextlib.suppress(psutil.Error):
                if child.cmdline()[1:3] == ["-S", str(PODINIT)]:
                    return int(child.pid)
        return None

    # --- talking to the container -----------------------------------------------------------

    def http_get(self, port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        """``GET path`` on the container's ``port`` (status, body); raises OSError when closed."""
        connection = _UnixHTTPConnection(str(self.port_socket(port)), timeout)
        try:
            connection.request("GET", path, headers={"Host": "localhost"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def short_state_root() -> Path:
    """A short directory for sandbox state (Unix socket paths must stay under 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="kt-", dir="/tmp"))


def run_once(spec: SandboxSpec, timeout: float = 30.0) -> tuple[int, str]:
    """Run a sandbox to completion (for checks and tests): exit code and output."""
    root = short_state_root()
    relay = HostRelay(root)
    try:
        state = root / "s"
        state.mkdir()
        with (root / "out").open("wb") as out:
            sandbox = Sandbox(spec, relay, state, out)
            sandbox.start()
            try:
                code = sandbox.wait(timeout)
            except subprocess.TimeoutExpired:
                sandbox.kill()
                raise
        return code, (root / "out").read_text(errors="replace")
    finally:
        relay.close()
        shutil.rmtree(root, ignore_errors=True)
