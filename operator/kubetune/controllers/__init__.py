"""The kopf operator: thin handlers that observe the cluster, call the pure planners of
:mod:`kubetune.plan`, and apply their answer (children, status, events, metrics).

Entry points: :func:`build_registry` (all handlers, for ``kopf run`` or tests) and
:func:`run_operator` (``kubetune operator``).
"""

from kubetune.controllers.main import run_operator
from kubetune.controllers.registry import build_registry

__all__ = ["build_registry", "run_operator"]
