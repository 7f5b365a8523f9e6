"""
Run the API emulator as a standalone process (for tests that need a separate server)::

    python -m tests.emulator serve --crds crds --url-file /tmp/emu.url \\
        [--tls --token-file token.txt --ca-out ca.crt] [--kubeconfig kubeconfig] [--port N]

It serves until SIGTERM or SIGINT. Once it is ready, the URL is written to ``--url-file``
(atomically: wait for the file to appear), the CA certificate to ``--ca-out`` and a
kubeconfig to ``--kubeconfig`` when given. ``--token-file`` holds the bearer token that
clients must send (``--token`` gives it on the command line instead).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence

from tests.emulator.harness import start_emulator
from tests.emulator.resources import load_crd_files


def _write_atomically(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as f:
        f.write(text)
    os.replace(f.name, path)


def serve(args: argparse.Namespace) -> int:
    crds = []
    for directory in args.crds or []:
        crds.extend(load_crd_files(directory))
    token = args.token
    if args.token_file:
        token = pathlib.Path(args.token_file).read_text().strip()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with start_emulator(
        crds,
        namespaces=args.namespace or ("default", "kube-system"),
        validate_crds=not args.no_validate_crds,
        validate_builtins=not args.no_validate_builtins,
        tls=args.tls,
        token=token,
        port=args.port,
    ) as emulator:
        if args.ca_out and emulator.ca_file is not None:
            pathlib.Path(args.ca_out).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(emulator.ca_file, args.ca_out)
        if args.kubeconfig:
            emulator.write_kubeconfig(args.kubeconfig)
        if args.url_file:
            _write_atomically(pathlib.Path(args.url_file), emulator.url + "\n")
        print(f"kube-api-emulator serving on {emulator.url}", flush=True)
        while not stop.wait(0.2):
            pass
        if emulator.server.server_errors:
            print(f"kube-api-emulator had {len(emulator.server.server_errors)} internal errors")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("serve", help="serve the kube-apiserver emulator until SIGTERM/SIGINT")
    cmd.add_argument("--crds", action="append", help="a directory of CRD YAML files (repeatable)")
    cmd.add_argument("--url-file", help="write the server URL here when ready")
    cmd.add_argument("--tls", action="store_true", help="serve HTTPS with a throw-away CA")
    cmd.add_argument("--ca-out", help="copy the CA certificate (PEM) here (with --tls)")
    cmd.add_argument("--token-file", help="require the bearer token in this file")
    cmd.add_argument("--token", help="require this bearer token")
    cmd.add_argument("--kubeconfig", help="write a kubeconfig for the emulator here")
    cmd.add_argument("--port", type=int, default=None, help="listen on this port (127.0.0.1)")
    cmd.add_argument("--namespace", action="append", help="namespaces to create (repeatable)")
    cmd.add_argument("--no-validate-crds", action="store_true", help="admit any custom resource")
    cmd.add_argument(
        "--no-validate-builtins", action="store_true", help="admit any built-in object"
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
