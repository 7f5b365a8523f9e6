"""The pod contract's names: labels, annotations, files and result keys, declared once.

The operator (planners, controllers, local runtime) and the workloads (``kubetune_workloads``,
which ship in the same wheel) import these; no other module spells them
(tests/unit/test_pod_contract.py greps ``operator/`` and ``images/`` for the values). The
typed halves of the contract live beside them: the step spec, the :class:`StepResult` and the
failure reasons with their retry class and exit codes (``FAILURE_REASONS``, ``EXIT_PERMANENT``,
``EXIT_RETRYABLE``) in :mod:`kubetune.api.steps`.
"""

from __future__ import annotations

from typing import Final

# --- labels on every child a planner creates (Jobs, Pods, ConfigMaps, Services, resources) ---
LABEL_KIND: Final = "kubetune.dev/kind"  # the owning resource's kind
LABEL_NAME: Final = "kubetune.dev/name"  # the owning resource's name (as a label value)
LABEL_RUN_ID: Final = "kubetune.dev/run-id"  # the run the child belongs to: g3, g3-1a2b3c, c2...
LABEL_STAGE: Final = "kubetune.dev/stage"  # a staged run's stage (one Job per stage)
LABEL_FEEDBACK_LOOP: Final = "kubetune.dev/feedback-loop"  # a FeedbackLoop's cycle resources
LABEL_CYCLE: Final = "kubetune.dev/cycle"  # their cycle number
LABEL_DRIFT_CHECK: Final = "kubetune.dev/drift-check"  # a drift Evaluation: its time slot
LABEL_CYCLE_STAGE: Final = "kubetune.dev/cycle-stage"  # a cycle resource's stage: preference

# --- annotations ------------------------------------------------------------------------------
# Written by the planners on children:
ANNOTATION_SPEC_HASH: Final = "kubetune.dev/spec-hash"  # the run hash a Job was built from
ANNOTATION_GENERATION: Final = "kubetune.dev/generation"
ANNOTATION_RESOURCE: Final = "kubetune.dev/resource"  # KIND/NAME of the owner
ANNOTATION_BASELINE_CHAMPION: Final = "kubetune.dev/baseline-champion"
# Set by people (kubectl annotate, `kubetune approve`) on a FeedbackLoop:
ANNOTATION_APPROVE: Final = "kubetune.dev/approve"  # =cN promotes cycle N
ANNOTATION_REJECT: Final = "kubetune.dev/reject"  # =cN rejects cycle N
ANNOTATION_TRIGGER: Final = "kubetune.dev/trigger"  # a new value starts a cycle
ANNOTATION_ABORT_ROLLOUT: Final = "kubetune.dev/abort-rollout"  # stops a canary rollout
# Written by the serving planner on the InferenceService it manages:
ANNOTATION_SERVING_HASH: Final = "kubetune.dev/serving-hash"
ANNOTATION_MODEL_URI: Final = "kubetune.dev/model-uri"

# --- labels Kubernetes' Job controller sets on a Job's Pods (the operator reads them) ---------
JOB_NAME_LABEL: Final = "batch.kubernetes.io/job-name"
LEGACY_JOB_NAME_LABEL: Final = "job-name"  # before Kubernetes 1.27

# --- files and environment of the pod ---------------------------------------------------------
SPEC_DIR: Final = "/etc/kubetune"  # the step spec's ConfigMap is mounted here, read-only
SPEC_KEY: Final = "spec.json"  # its key in the ConfigMap and file name in SPEC_DIR
SPEC_PATH: Final = f"{SPEC_DIR}/{SPEC_KEY}"
TERMINATION_LOG: Final = "/dev/termination-log"  # the container's terminationMessagePath
TERMINATION_LOG_ENV: Final = "KUBETUNE_TERMINATION_LOG"  # where the workload writes its result
RESULT_LINE_PREFIX: Final = "KUBETUNE_RESULT"  # the result is also printed: PREFIX + " " + JSON
PVC_ROOT_ENV: Final = "KUBETUNE_PVC_ROOT"  # where pvc://CLAIM/path volumes are mounted
CACHE_ENV: Final = "KUBETUNE_CACHE"  # the writable cache directory (an emptyDir)
PROGRESS_FILE_ENV: Final = "KUBETUNE_PROGRESS_FILE"  # local runs: progress JSON goes here
# Multi-node runs (torchrun): node count, this node's rank (the Job's completion index), and
# processes per node.
NNODES_ENV: Final = "KUBETUNE_NNODES"
NODE_RANK_ENV: Final = "KUBETUNE_NODE_RANK"
NPROC_PER_NODE_ENV: Final = "KUBETUNE_NPROC_PER_NODE"
# Staged dataprep (an Indexed Job of map pods, then a reduce): the stage (map, reduce), the
# number of map tasks, the directory of the map shards; the pod's task is the Job's completion
# index (COMPLETION_INDEX_ENV, set by Kubernetes and by the planner); a local run's one process
# stands for LOCAL_COMPLETIONS_ENV indexes.
DATAPREP_STAGE_ENV: Final = "KUBETUNE_DATAPREP_STAGE"
DATAPREP_TASKS_ENV: Final = "KUBETUNE_DATAPREP_TASKS"
DATAPREP_SHARDS_ENV: Final = "KUBETUNE_DATAPREP_SHARDS"
COMPLETION_INDEX_ENV: Final = "JOB_COMPLETION_INDEX"
LOCAL_COMPLETIONS_ENV: Final = "KUBETUNE_LOCAL_COMPLETIONS"

# --- keys of StepResult.metrics the operator reads -------------------------------------------
RESULT_PENDING_RECORDS: Final = "pendingRecords"  # feedback count: usable new records
RESULT_TRAIN_LOSS: Final = "trainLoss"  # finetune: the final training loss
# Where the operator reads a finished run's loss: trainLoss, else "loss" (the name of the live
# progress field, LiveProgress.loss, which a step may report as its final value too).
RESULT_LOSS_KEYS: Final = (RESULT_TRAIN_LOSS, "loss")
