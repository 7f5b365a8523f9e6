"""A stand-in for ``quay.io/brancz/kube-rbac-proxy``: the flags the chart passes, its contract.

``--secure-listen-address=HOST:PORT`` (HTTPS with a self-signed certificate, as the proxy makes
when given none), ``--upstream=URL``, ``--allow-paths=/a,/b``. Each request must carry a
bearer token: the proxy asks the API server who it is (TokenReview) and whether that user may
``get`` the path (SubjectAccessReview, a non-resource URL), with the pod's service-account
token, then forwards it to the upstream. When the API server does not answer those reviews the
request is refused (fail closed), never forwarded.
"""

from __future__ import annotations

import argparse
import datetime
import http.server
import json
import os
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SA = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def self_signed(directory: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-rbac-proxy")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def api_post(path: str, body: dict[str, Any]) -> dict[str, Any]:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ["KUBERNETES_SERVICE_PORT"]
    context = ssl.create_default_context(cafile=str(SA / "ca.crt"))
    request = urllib.request.Request(
        f"https://{host}:{port}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {(SA / 'token').read_text().strip()}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, context=context, timeout=5) as response:
        found: dict[str, Any] = json.load(response)
        return found


def allowed(token: str, path: str) -> tuple[int, str]:
    try:
        review = api_post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token},
            },
        )
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return 401, "Unauthorized"
        user = status.get("user") or {}
        access = api_post(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": user.get("username"),
                    "groups": user.get("groups"),
                    "nonResourceAttributes": {"path": path, "verb": "get"},
                },
            },
        )
    except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
        return 500, f"cannot review the request: {exc}"
    if not (access.get("status") or {}).get("allowed"):
        return 403, f"Forbidden (user={user.get('username')}, verb=get, path={path})"
    return 200, ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secure-listen-address", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--allow-paths", default="")
    args, _unknown = parser.parse_known_args(argv)  # --logtostderr, --v, ...
    host, _, port = args.secure_listen_address.rpartition(":")
    paths = [p for p in args.allow_paths.split(",") if p]
    upstream = args.upstream.rstrip("/")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if paths and path not in paths:
                self.send_error(404)
                return
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                self.send_error(401, "Unauthorized")
                return
            code, why = allowed(auth.removeprefix("Bearer ").strip(), path)
            if code != 200:
                self.send_error(code, why)
                return
            try:
                with urllib.request.urlopen(upstream + self.path, timeout=10) as response:
                    body = response.read()
                    ctype = response.headers.get("Content-Type", "text/plain")
            except OSError as exc:
                self.send_error(502, str(exc))
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *items: Any) -> None:
            sys.stderr.write(format % items + "\n")

    server = http.server.ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    # the certificate lives in a private directory on the pod's tmpfs (/dev/shm), as the real
    # proxy keeps its generated one in memory: the root file system is read-only
    directory = Path(tempfile.mkdtemp(dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(directory))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"Listening securely on {args.secure_listen_address}", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
