"""How the operator logs in to the Kubernetes API: the official ``kubernetes`` client's loaders.

The sources are tried in the order every Kubernetes client uses:

1. ``--kubeconfig`` (and ``--context``) when given: that file only, as ``kubectl --kubeconfig``;
2. the pod's service account (``KUBERNETES_SERVICE_HOST``/``PORT`` and the token, CA and namespace
   under ``/var/run/secrets/kubernetes.io/serviceaccount``), unless ``--context`` asks for a
   kubeconfig context;
3. ``KUBECONFIG`` (colon-separated files are merged), else ``~/.kube/config``.

:func:`load` returns the first that works as a ``kubernetes.client.Configuration``; when none
does, :class:`LoginFailed` says in one line what was tried and why each failed. The token of an
in-cluster service account is re-read by the client before it expires (projected tokens
rotate); exec and auth-provider plugins of a kubeconfig are run by the client's loader.
:func:`connection_info` hands the same credentials to kopf's watches.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import kopf
import kubernetes.client
import kubernetes.config
from kubernetes.config.config_exception import ConfigException

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_KUBECONFIG = "~/.kube/config"


class LoginFailed(RuntimeError):
    """No source of credentials works; the message names each source tried."""


@dataclass(frozen=True)
class KubeAccess:
    """Where the credentials come from: ``kubeconfig``/``context`` as given on the command line
    (None: the defaults above), and the environment to read (None: the process's)."""

    kubeconfig: str | None = None
    context: str | None = None
    environ: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Login:
    """Credentials that worked: the client configuration, where they came from (for messages,
    never a secret), and the namespace they default to."""

    configuration: kubernetes.client.Configuration
    source: str
    namespace: str


def _in_cluster(configuration: kubernetes.client.Configuration) -> Login:
    kubernetes.config.load_incluster_config(client_configuration=configuration)
    namespace_file = SERVICE_ACCOUNT_DIR / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.is_file() else "default"
    return Login(configuration, "in-cluster service account", namespace or "default")


def _kubeconfig(
    configuration: kubernetes.client.Configuration, files: str, context: str | None
) -> Login:
    paths = [p for p in files.split(os.pathsep) if p]
    if not any(Path(p).expanduser().is_file() for p in paths):
        raise ConfigException("no such file")
    kubernetes.config.load_kube_config(
        config_file=files, context=context, client_configuration=configuration, persist_config=False
    )
    contexts, current = kubernetes.config.list_kube_config_contexts(config_file=files)
    chosen = (
        next((c for c in contexts if c.get("name") == context), current) if context else current
    )
    namespace = str(((chosen or {}).get("context") or {}).get("namespace") or "default")
    name = (chosen or {}).get("name") or "?"
    return Login(configuration, f"kubeconfig {files} (context {name})", namespace)


def _why(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load(access: KubeAccess = KubeAccess()) -> Login:
    """The first source of credentials that loads (see the module's docstring).

    Raises :class:`LoginFailed` naming every source tried and why it failed.
    """
    environ = os.environ if access.environ is None else access.environ
    tried: list[str] = []
    if access.kubeconfig:
        sources = [("kubeconfig", access.kubeconfig)]
    else:
        sources = [] if access.context else [("in-cluster", "")]
        sources.append(("kubeconfig", environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG))
    for kind, where in sources:
        configuration = kubernetes.client.Configuration()
        try:
            if kind == "in-cluster":
                if not environ.get("KUBERNETES_SERVICE_HOST"):
                    raise ConfigException("KUBERNETES_SERVICE_HOST is not set (not in a pod)")
                return _in_cluster(configuration)
            return _kubeconfig(configuration, where, access.context)
        except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
            label = "in-cluster service account" if kind == "in-cluster" else f"kubeconfig {where}"
            tried.append(f"{label}: {_why(exc)}")
    raise LoginFailed(
        "no Kubernetes credentials: tried "
        + "; ".join(tried)
        + " (run in a pod with a service account, set KUBECONFIG, or pass --kubeconfig)"
    )


def bearer_token(configuration: kubernetes.client.Configuration) -> tuple[str | None, str | None]:
    """(scheme, token) of the configuration's ``Authorization`` header (both None without one).

    Read through the client's accessor, so a refreshed service-account token is returned.
    """
    header = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
    if not header:
        return None, None
    scheme, _, token = str(header).partition(" ")
    return (scheme, token) if token else (None, scheme)


def connection_info(login: Login) -> kopf.ConnectionInfo:
    """The same credentials in the form kopf's watches use."""
    configuration = login.configuration
    scheme, token = bearer_token(configuration)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        default_namespace=login.namespace,
    )
