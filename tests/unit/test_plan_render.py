"""`kubetune plan`: the objects the operator would create for a set of manifests."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
from kubetune.api.resources import Compression, Dataset, Evaluation, FinetuneJob
from kubetune.api.steps import EvaluateStepSpec, FinetuneStepSpec, parse_step_spec
from kubetune.cli.render import plan_manifests, render_plan
from kubetune.plan import OperatorConfig

CONFIG = OperatorConfig(artifact_store="s3://artifacts", cuda_image="cuda:1", cpu_image="cpu:1")


def pipeline() -> list[Any]:
    meta = {"namespace": "team"}
    return [
        Dataset.model_validate(
            {"metadata": {"name": "support", **meta}, "spec": {"sources": [{"uri": "s3://raw/"}]}}
        ),
        FinetuneJob.model_validate(
            {
                "metadata": {"name": "support-lora", **meta},
                "spec": {
                    "model": {"base": {"uri": "hf://org/base"}},
                    "dataset": {"name": "support"},
                    "lora": {"r": 8},
                    "resources": {"gpus": 1, "memory": "24Gi"},
                },
            }
        ),
        Compression.model_validate(
            {
                "metadata": {"name": "support-int8", **meta},
                "spec": {
                    "model": {"kind": "FinetuneJob", "name": "support-lora"},
                    "steps": [{"mergeAdapter": {}}, {"quantize": {"bits": 8}}],
                },
            }
        ),
        Evaluation.model_validate(
            {
                "metadata": {"name": "support-eval", **meta},
                "spec": {
                    "candidate": {"kind": "Compression", "name": "support-int8"},
                    "baseline": {"uri": "hf://org/base"},
                    "prompts": {"configMap": {"name": "cases"}},
                    "metrics": [{"name": "rougeL"}],
                },
            }
        ),
    ]


CASES = {("team", "cases"): {"prompts.jsonl": json.dumps({"prompt": "hi", "expected": "hello"})}}


def test_renders_every_object_of_a_pipeline_in_order_and_schema_valid() -> None:
    objects = render_plan(pipeline(), CONFIG, config_maps=CASES)
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert names == [
        ("ConfigMap", "support-dataprep-g1-spec"),
        ("Job", "support-dataprep-g1"),
        ("ConfigMap", "support-lora-finetune-g1-spec"),
        ("Job", "support-lora-finetune-g1"),
        ("ConfigMap", "support-int8-compress-g1-spec"),
        ("Job", "support-int8-compress-g1"),
        ("ConfigMap", "support-eval-evaluate-g1-spec"),
        ("Job", "support-eval-evaluate-g1"),
    ]
    for obj in objects:
        kubernetes_validate.validate(obj, "1.32", strict=True)
        assert "ownerReferences" not in obj["metadata"]  # no uid before the API server sees it
        assert "status" not in obj


def test_in_file_dependencies_resolve_to_their_default_outputs() -> None:
    objects = render_plan(pipeline(), CONFIG, config_maps=CASES)
    specs = {
        o["metadata"]["name"]: parse_step_spec(o["data"]["spec.json"])
        for o in objects
        if o["kind"] == "ConfigMap"
    }
    finetune = specs["support-lora-finetune-g1-spec"]
    assert isinstance(finetune, FinetuneStepSpec)
    assert finetune.dataset.uri == "s3://artifacts/team/dataset/support/g1"
    evaluate = specs["support-eval-evaluate-g1-spec"]
    assert isinstance(evaluate, EvaluateStepSpec)
    assert evaluate.candidate.uri == "s3://artifacts/team/compression/support-int8/g1"
    assert evaluate.extra_cases is not None and evaluate.extra_cases[0].expected == "hello"
    jobs = [o for o in objects if o["kind"] == "Job"]
    images = [j["spec"]["template"]["spec"]["containers"][0]["image"] for j in jobs]
    assert images == ["cpu:1", "cuda:1", "cpu:1", "cpu:1"]


def test_output_is_deterministic() -> None:
    first = json.dumps(render_plan(pipeline(), CONFIG, config_maps=CASES), sort_keys=True)
    assert first == json.dumps(render_plan(pipeline(), CONFIG, config_maps=CASES), sort_keys=True)


def test_references_outside_the_set_render_nothing_and_say_why() -> None:
    resources = pipeline()[1:3]  # no Dataset in the set
    rendered = plan_manifests(resources, CONFIG)
    assert rendered[0].plan.children == []
    assert rendered[0].waiting is not None and "Dataset/support" in rendered[0].waiting
    assert [o["metadata"]["name"] for o in rendered[1].plan.children] == [
        "support-int8-compress-g1-spec",
        "support-int8-compress-g1",
    ]
    assert rendered[1].waiting is None
