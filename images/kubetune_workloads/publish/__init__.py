"""The ``publish`` step: hand a finished model to MLflow, an OCI registry and the Hugging Face
Hub (``spec.publish``), or move the ``champion`` alias on a FeedbackLoop promotion.

One module per target (:mod:`.mlflow_registry`, :mod:`.oci` over :mod:`.registry`,
:mod:`.huggingface`), the shared facts of the artifact in :mod:`.artifact`, the step in
:mod:`.main`. See docs/serving.md.
"""

from __future__ import annotations

from kubetune_workloads.publish.main import run

__all__ = ["run"]
