"""The chart's ``kubetune operator`` command when it cannot log in: one clear line, no traceback.

The command, args and env are the rendered Deployment's (``kubetune operator`` from the image's
ENTRYPOINT and the chart's flags), started as a separate process in a network namespace of its
own, with an empty HOME.
"""

from __future__ import annotations

import socket
from pathlib import Path

from tests.install.operator_proc import deployment_command, run_to_exit
from tests.install.platform import RELEASE_NS, render_chart


def command(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    argv, env = deployment_command(render_chart(workdir=tmp_path), "kubetune-0", RELEASE_NS)
    home = tmp_path / "home"
    home.mkdir()
    env["HOME"] = str(home)
    return argv, env


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_dead_api_server_is_one_line_and_a_failure(tmp_path: Path) -> None:
    argv, env = command(tmp_path)
    server = f"https://127.0.0.1:{closed_port()}"
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\n"
        f"clusters:\n- name: dead\n  cluster:\n    server: {server}\n"
        "    insecure-skip-tls-verify: true\n"
        "users:\n- name: dead\n  user:\n    token: abc\n"
        "contexts:\n- name: dead\n  context: {cluster: dead, user: dead}\n"
    )
    code, out, err = run_to_exit(argv, {**env, "KUBECONFIG": str(config)}, timeout=90)
    assert code != 0
    assert "Traceback" not in out + err, out + err
    found = lines(err)
    assert len(found) == 1, f"stderr: {err!r} stdout: {out!r}"
    assert server in found[0], found[0]


def test_no_kubeconfig_and_no_service_account_names_what_was_tried(tmp_path: Path) -> None:
    argv, env = command(tmp_path)
    env = {k: v for k, v in env.items() if not k.startswith(("KUBECONFIG", "KUBERNETES_"))}
    code, out, err = run_to_exit(argv, env, timeout=60)
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    found = lines(err)
    assert len(found) == 1, f"stderr: {err!r} stdout: {out!r}"
    assert "in-cluster" in found[0] and "kubeconfig" in found[0], found[0]
