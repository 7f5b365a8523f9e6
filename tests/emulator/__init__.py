"""
A kube-apiserver emulator for kubetune's tests (on top of ``kmock``).

Public API::

    from tests.emulator import Kubelet, run_kopf, start_emulator

    with start_emulator(crds=[WIDGET_CRD], admission=validate) as emu:
        emu.url                                   # http://127.0.0.1:<port>
        emu.create('widgets', {...}, namespace='default')
        emu.get('widgets', 'default', 'w1')       # dict or None (a copy)
        emu.objects('configmaps', 'default', labels='app=x')
        emu.patch_status('widgets', 'default', 'w1', {'phase': 'Ready'})
        emu.wait_for('widgets', 'default', 'w1', {'status': {'phase': 'Ready'}})
        emu.faults.fail('PATCH', 'widgets', code=409)   # the next matching request
        emu.faults.drop_watches()
        emu.requests('PATCH', 'widgets')          # the served requests, for assertions
        Kubelet(emu).succeed('default', 'job-1', {'accuracy': 0.9})
        with run_kopf(emu, registry) as runner:   # kopf.testing.KopfRunner, --standalone
            ...

* :func:`start_emulator` runs :class:`ApiServer` (a ``kmock.KubernetesEmulator``
  subclass) in a background thread on a random local port; see
  :mod:`tests.emulator.apiserver` for the emulated kube-apiserver semantics.
* :class:`Emulator` is the thread-safe handle: direct reads/writes of objects
  (they bump resourceVersions & emit watch events), waiting, fault injection.
* :class:`Kubelet` moves batch/v1 Jobs & their Pods through their lifecycle.
* :func:`run_kopf` runs a kopf operator (from an ``OperatorRegistry``) against
  the emulator with ``kopf.testing.KopfRunner``.

The package is imported as ``tests.emulator``: run pytest from the repository
root as ``python -m pytest`` (or with ``pythonpath = ["."]`` configured).
"""

from tests.emulator.apiserver import (
    AdmissionHook,
    ApiServer,
    Fault,
    Faults,
    RequestRecord,
    Route,
    Watch,
)
from tests.emulator.harness import Emulator, start_emulator
from tests.emulator.k8sutils import ApiError, FieldSelector, JsonDict, LabelSelector
from tests.emulator.kopfrun import fast_settings, run_kopf
from tests.emulator.kubelet import Kubelet, condition
from tests.emulator.resources import BUILTIN_RESOURCES, ResourceSpec, specs_from_crd

__all__ = [
    "BUILTIN_RESOURCES",
    "AdmissionHook",
    "ApiError",
    "ApiServer",
    "Emulator",
    "Fault",
    "Faults",
    "FieldSelector",
    "JsonDict",
    "Kubelet",
    "LabelSelector",
    "RequestRecord",
    "ResourceSpec",
    "Route",
    "Watch",
    "condition",
    "fast_settings",
    "run_kopf",
    "specs_from_crd",
    "start_emulator",
]
