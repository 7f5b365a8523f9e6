"""What a container image would run, read from the repository's ``images/*.Dockerfile``.

There is no container runtime in the tests, so an image is the host's file system plus the
project's virtual environment: its ENTRYPOINT, CMD, ENV, WORKDIR and USER come from the final
stage of the Dockerfile whose name matches the image's repository name (``.../operator:tag`` ->
``images/operator.Dockerfile``, ``.../workloads-cpu@sha256:...`` -> ``images/workloads-cpu
.Dockerfile``), and its programs (``python``, ``kubetune``, ``torchrun``) are the virtual
environment's: ``PATH`` starts with the venv's ``bin`` wherever the Dockerfile puts an
interpreter (``/usr/local/bin`` of python:3.11-slim, ``/opt/venv/bin`` of the CUDA image).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO / "images"
VENV_BIN = Path(sys.executable).parent
VENV = VENV_BIN.parent
# The interpreter the venv was made from (e.g. a pyenv build under /root): part of the "image".
BASE_PREFIX = Path(sys.base_prefix)
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageNotFound(LookupError):
    """No Dockerfile builds this image (the kubelet reports ErrImagePull)."""


@dataclass(frozen=True)
class Image:
    """The runtime configuration of one image (the final stage of its Dockerfile)."""

    name: str
    dockerfile: Path
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = ""

    @property
    def uid(self) -> int | None:
        """The numeric user of USER, when it is numeric (``1000:1000`` -> 1000)."""
        user = self.user.split(":", 1)[0]
        return int(user) if user.isdigit() else None

    @property
    def gid(self) -> int | None:
        parts = self.user.split(":", 1)
        return int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else self.uid

    def runtime_env(self) -> dict[str, str]:
        """The image's environment as a container sees it, programs mapped to the venv."""
        env = {"PATH": f"{VENV_BIN}:{BASE_PATH}"}
        for key, value in self.env.items():
            if key == "PATH":
                continue  # the venv's bin replaces the image's interpreter directories
            if key == "VIRTUAL_ENV":
                value = str(VENV)
            env[key] = value
        return env


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def _exec_form(value: str) -> tuple[str, ...]:
    value = value.strip()
    if value.startswith("["):
        parsed = json.loads(value)
        return tuple(str(v) for v in parsed)
    return ("/bin/sh", "-c", value)


def _substitute(value: str, env: dict[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return env.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, value)


def _env_pairs(value: str, env: dict[str, str]) -> dict[str, str]:
    tokens = shlex.split(value)
    if tokens and "=" not in tokens[0]:
        return {tokens[0]: _substitute(" ".join(tokens[1:]), env)}  # ENV KEY value
    pairs: dict[str, str] = {}
    for token in tokens:
        key, _, val = token.partition("=")
        pairs[key] = _substitute(val, {**env, **pairs})
    return pairs


def parse_dockerfile(path: Path) -> Image:
    """The final stage's ENTRYPOINT, CMD, ENV, WORKDIR and USER."""
    name = path.name.removesuffix(".Dockerfile")
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = {}
    workdir, user = "/", ""
    for line in _logical_lines(path.read_text()):
        instruction, _, rest = line.partition(" ")
        match instruction.upper():
            case "FROM":  # a new stage: only the last one is the image
                entrypoint, cmd, env, workdir, user = (), (), {}, "/", ""
            case "ENV":
                env.update(_env_pairs(rest, env))
            case "ENTRYPOINT":
                entrypoint, cmd = _exec_form(rest), ()  # ENTRYPOINT resets CMD
            case "CMD":
                cmd = _exec_form(rest)
            case "WORKDIR":
                workdir = rest.strip() if rest.strip().startswith("/") else f"{workdir}/{rest}"
            case "USER":
                user = rest.strip()
    return Image(name, path, entrypoint, cmd, env, workdir, user)


def repository_name(image: str) -> str:
    """``ghcr.io/kubetune/workloads-cpu:0.1.0`` -> ``workloads-cpu``."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


STANDINS = Path(__file__).resolve().parent / "standins"


def third_party() -> dict[str, Image]:
    """Images the chart runs that the repository does not build, by stand-ins of their flags
    (tests/install/standins): kube-rbac-proxy, whose distroless image runs as 65532."""
    return {
        "kube-rbac-proxy": Image(
            "kube-rbac-proxy",
            STANDINS / "kube_rbac_proxy.py",
            entrypoint=(str(VENV_BIN / "python"), str(STANDINS / "kube_rbac_proxy.py")),
            user="65532:65532",
        )
    }


class ImageCatalog:
    """The images the repository builds, by repository name, and the stand-ins."""

    def __init__(self, directory: Path = IMAGES_DIR) -> None:
        self.images = third_party()
        self.images.update(
            (image.name, image)
            for image in (parse_dockerfile(p) for p in sorted(directory.glob("*.Dockerfile")))
        )

    def resolve(self, image: str) -> Image:
        found = self.images.get(repository_name(image))
        if found is None:
            raise ImageNotFound(
                f'failed to pull image "{image}": no images/*.Dockerfile builds '
                f"{repository_name(image)!r} (known: {', '.join(sorted(self.images))})"
            )
        return found
