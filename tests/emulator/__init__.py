"""
A kube-apiserver emulator for kubetune's tests (on top of ``kmock``).

Public API::

    from tests.emulator import Kubelet, run_kopf, start_emulator

    with start_emulator(crds=[WIDGET_CRD], admission=validate) as emu:
        emu.url                                   # http://127.0.0.1:<port>
        emu.write_kubeconfig(tmp_path / 'kubeconfig')   # for kubectl & kubernetes-client
        emu.create('widgets', {...}, namespace='default')
        emu.get('widgets', 'default', 'w1')       # dict or None (a copy)
        emu.objects('configmaps', 'default', labels='app=x')
        emu.patch_status('widgets', 'default', 'w1', {'phase': 'Ready'})
        emu.wait_for('widgets', 'default', 'w1', {'status': {'phase': 'Ready'}})
        emu.faults.fail('PATCH', 'widgets', code=409)   # the next matching request
        emu.faults.drop_watches()
        emu.requests('PATCH', 'widgets')          # the served requests, for assertions
        emu.rejections()                          # the writes refused (400/404/415/422)
        emu.warnings()                            # e.g. unknown fields dropped from requests
        Kubelet(emu).succeed('default', 'job-1', {'accuracy': 0.9})
        with run_kopf(emu, registry) as runner:   # kopf.testing.KopfRunner, --standalone
            ...

* :func:`start_emulator` runs :class:`ApiServer` (a ``kmock.KubernetesEmulator``
  subclass) in a background thread on a random local port (HTTPS and a bearer token
  with ``tls=True, token=...``); see :mod:`tests.emulator.apiserver` for the emulated
  kube-apiserver semantics, :mod:`tests.emulator.crd_admission` for custom resources
  and :mod:`tests.emulator.builtins` for built-in kinds. ``python -m tests.emulator
  serve`` runs it as a process. docs/testing.md lists what it does not emulate.
* :class:`Emulator` is the thread-safe handle: direct reads/writes of objects
  (they bump resourceVersions & emit watch events), waiting, fault injection.
* :class:`Kubelet` moves batch/v1 Jobs & their Pods through their lifecycle.
* :func:`run_kopf` runs a kopf operator (from an ``OperatorRegistry``) against
  the emulator with ``kopf.testing.KopfRunner``.

Nothing in this package imports ``kubetune``: it is an independent oracle of the operator.
The package is imported as ``tests.emulator``: run pytest from the repository
root as ``python -m pytest`` (or with ``pythonpath = ["."]`` configured).
"""

from tests.emulator.apiserver import (
    AdmissionHook,
    ApiServer,
    Fault,
    Faults,
    Rejection,
    RequestRecord,
    Route,
    Watch,
    WriteOptions,
)
from tests.emulator.apivalidation import FieldError
from tests.emulator.crd_admission import CrdAdmission, CrdAdmissionRegistry
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
    "CrdAdmission",
    "CrdAdmissionRegistry",
    "Emulator",
    "Fault",
    "Faults",
    "FieldError",
    "FieldSelector",
    "JsonDict",
    "Kubelet",
    "LabelSelector",
    "Rejection",
    "RequestRecord",
    "ResourceSpec",
    "Route",
    "Watch",
    "WriteOptions",
    "condition",
    "fast_settings",
    "run_kopf",
    "specs_from_crd",
    "start_emulator",
]
