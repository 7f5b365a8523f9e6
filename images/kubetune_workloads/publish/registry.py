"""A small OCI distribution-spec client: blobs, manifests and tags, with Basic or Bearer auth.

Only what publishing needs, over ``requests``: check the registry (``GET /v2/``), upload a
blob unless it exists (monolithic ``POST`` + ``PUT``), put and get manifests. A registry that
answers 401 with a ``Bearer`` challenge gets a token from its realm (with the credentials when
given); a ``Basic`` challenge gets the credentials directly. Errors become WorkloadErrors with a
reason from the step contract and a message without credentials.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from kubetune_workloads.errors import WorkloadError

TIMEOUT_S = 30.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def split_reference(reference: str) -> tuple[str, str]:
    """``host[:port]/path`` -> (host, repository path)."""
    host, _, repo = reference.partition("/")
    return host, repo


@dataclass
class Registry:
    """One repository of one registry."""

    reference: str  # host[:port]/repo/path
    insecure: bool = False
    username: str | None = None
    password: str | None = None
    _token: str | None = field(default=None, repr=False)
    _basic: bool = False
    _session: requests.Session = field(default_factory=requests.Session, repr=False)

    @property
    def host(self) -> str:
        return split_reference(self.reference)[0]

    @property
    def repository(self) -> str:
        return split_reference(self.reference)[1]

    def _url(self, path: str) -> str:
        scheme = "http" if self.insecure else "https"
        return f"{scheme}://{self.host}{path}"

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        auth = None
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        elif self.username is not None and self._basic:
            auth = (self.username, self.password or "")
        try:
            return self._session.request(
                method, url, headers=headers, auth=auth, timeout=TIMEOUT_S, **kwargs
            )
        except requests.RequestException as exc:
            raise WorkloadError(
                "RegistryUnreachable",
                f"OCI registry {self.host} did not answer: {type(exc).__name__}",
            ) from None

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """A request, authenticating once on a 401 challenge; errors raised with a reason."""
        url = path_or_url if "://" in path_or_url else self._url(path_or_url)
        data = kwargs.get("data")
        response = self._send(method, url, **kwargs)
        if response.status_code == 401:
            self._authenticate(response.headers.get("WWW-Authenticate", ""))
            if data is not None and hasattr(data, "seek"):
                data.seek(0)
            response = self._send(method, url, **kwargs)
        self._raise_for(response, method, url)
        return response

    def _authenticate(self, challenge: str) -> None:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self.username is None:
                raise self._unauthorized("asks for credentials and none are set")
            self._basic = True
            return
        if scheme.lower() != "bearer":
            raise self._unauthorized(f"answered 401 with challenge {scheme or 'none'!r}")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = {
            "service": fields.get("service", ""),
            "scope": f"repository:{self.repository}:pull,push",
        }
        auth = (self.username, self.password or "") if self.username is not None else None
        try:
            answer = self._session.get(
                fields.get("realm", ""), params=query, auth=auth, timeout=TIMEOUT_S
            )
        except requests.RequestException as exc:
            raise WorkloadError(
                "RegistryUnreachable", f"token service of {self.host}: {type(exc).__name__}"
            ) from None
        if answer.status_code in (401, 403):
            raise self._unauthorized("its token service refused the credentials")
        body = answer.json() if answer.ok else {}
        token = body.get("token") or body.get("access_token")
        if not token:
            raise self._unauthorized(f"its token service answered {answer.status_code}")
        self._token = str(token)

    def _unauthorized(self, why: str) -> WorkloadError:
        return WorkloadError("PublishUnauthorized", f"OCI registry {self.host} {why}")

    def _raise_for(self, response: requests.Response, method: str, url: str) -> None:
        code = response.status_code
        if code < 400 or (method == "HEAD" and code == 404):
            return
        path = url.split(self.host, 1)[-1].split("?", 1)[0]
        detail = _errors(response)
        if code in (401, 403):
            raise self._unauthorized(f"refused {method} {path} ({code}): wrong credentials?")
        reason = "RegistryUnreachable" if code >= 500 or code == 429 else "PublishRejected"
        raise WorkloadError(reason, f"OCI registry {self.host}: {method} {path} -> {code} {detail}")

    # --- the operations -----------------------------------------------------------------

    def check(self) -> None:
        """The registry answers the distribution API (and accepts the credentials)."""
        self.request("GET", "/v2/")

    def blob_exists(self, digest: str) -> bool:
        return self.request("HEAD", f"/v2/{self.repository}/blobs/{digest}").status_code == 200

    def push_blob(self, path: Path | None, digest: str, data: bytes | None = None) -> None:
        """Upload a file (or bytes) as a blob, unless the registry has it already."""
        if self.blob_exists(digest):
            return
        started = self.request("POST", f"/v2/{self.repository}/blobs/uploads/")
        location = started.headers.get("Location", "")
        if "://" not in location:
            location = self._url(location)
        joiner = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream"}
        if data is not None:
            self.request("PUT", f"{location}{joiner}digest={digest}", data=data, headers=headers)
            return
        assert path is not None
        with path.open("rb") as handle:
            self.request("PUT", f"{location}{joiner}digest={digest}", data=handle, headers=headers)

    def put_manifest(self, reference: str, body: bytes) -> str:
        """Store a manifest under a tag or digest; its digest."""
        headers = {"Content-Type": OCI_MANIFEST}
        self.request(
            "PUT", f"/v2/{self.repository}/manifests/{reference}", data=body, headers=headers
        )
        return sha256_digest(body)

    def get_manifest(self, reference: str) -> bytes:
        headers = {"Accept": OCI_MANIFEST}
        return self.request(
            "GET", f"/v2/{self.repository}/manifests/{reference}", headers=headers
        ).content

    def tag(self, digest: str, tag: str) -> None:
        """Point ``tag`` at the manifest ``digest`` (moving it when it exists)."""
        body = self.get_manifest(digest)
        if sha256_digest(body) != digest:
            raise WorkloadError(
                "PublishRejected", f"registry returned another manifest for {digest}"
            )
        self.put_manifest(tag, body)


def _errors(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)[:300]
    except ValueError:
        return response.text[:200]
