"""The Dataset controller: one dataprep Job per run; with ``spec.parallelism`` above 1, a map
Indexed Job then a reduce Job, in order (decided by kubetune.plan.dataset and plan.stages);
Ready with version and counts, ``status.stages`` per stage."""

from __future__ import annotations

from kubetune.controllers.base import KindController

CONTROLLER = KindController(kind="Dataset")
