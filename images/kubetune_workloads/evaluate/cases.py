"""Gather the prompt cases of an evaluation from every source the spec names.

Sources, concatenated in this order: ``spec.prompts.inline``; the cases the operator read
from a ConfigMap (``extraCases``); the validation split of the prompt Dataset artifact; and a
JSONL file of cases at ``spec.prompts.uri``. ``spec.prompts.limit`` then caps the total.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune.api.evaluation import ChatMessage, PromptCase
from kubetune.api.steps import EvaluateStepSpec
from pydantic import ValidationError

from kubetune_workloads import storage
from kubetune_workloads.datasetio import open_dataset
from kubetune_workloads.errors import invalid_input


def gather_cases(step: EvaluateStepSpec) -> list[PromptCase]:
    """Every case, with a unique id (its position when the source gave none)."""
    prompts = step.spec.prompts
    cases: list[PromptCase] = []
    cases += prompts.inline or []
    cases += step.extra_cases or []
    dataset_uri = step.prompt_dataset.uri if step.prompt_dataset else None
    if dataset_uri is None and prompts.dataset is not None:
        dataset_uri = prompts.dataset.uri  # a dataset artifact URI needs no resolving
    if dataset_uri is not None:
        cases += dataset_cases(storage.fetch(dataset_uri))
    if prompts.uri:
        path = storage.fetch(prompts.uri)
        cases += dataset_cases(path) if path.is_dir() else jsonl_cases(path, prompts.uri)
    if prompts.limit is not None:
        cases = cases[: prompts.limit]
    return with_ids(cases)


def with_ids(cases: list[PromptCase]) -> list[PromptCase]:
    """Fill missing ids with the case's index; refuse duplicate ids."""
    out: list[PromptCase] = []
    seen: set[str] = set()
    for index, case in enumerate(cases):
        case_id = case.id if case.id is not None else str(index)
        if case_id in seen:
            raise invalid_input(f"duplicate prompt case id {case_id!r}; case ids must be unique")
        seen.add(case_id)
        out.append(case if case.id == case_id else case.model_copy(update={"id": case_id}))
    return out


def jsonl_cases(path: Path, uri: str) -> list[PromptCase]:
    """Cases from a JSONL file, one PromptCase (camelCase fields) per line."""
    cases: list[PromptCase] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid_input(f"cannot read prompt cases from {uri}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            cases.append(PromptCase.model_validate(json.loads(line)))
        except (ValueError, ValidationError) as exc:
            raise invalid_input(f"{uri} line {number} is not a valid prompt case: {exc}") from exc
    return cases


def dataset_cases(path: Path) -> list[PromptCase]:
    """Cases from a prepared dataset's validation split (text records give no cases)."""
    dataset = open_dataset(path)
    cases: list[PromptCase] = []
    for index, record in enumerate(dataset.iter_records("validation")):
        try:
            case = record_case(record, f"dataset-{index}")
        except (ValueError, ValidationError, KeyError, TypeError) as exc:
            raise invalid_input(
                f"validation record {index} of the dataset at {path} is not a usable case: {exc}"
            ) from exc
        if case is not None:
            cases.append(case)
    return cases


def record_case(record: dict[str, Any], case_id: str) -> PromptCase | None:
    """An instruction or chat record as a case; None for records that hold no answer."""
    tags = _tags(record)
    if "instruction" in record:
        prompt = "\n\n".join(p for p in (record.get("instruction"), record.get("input")) if p)
        if not prompt or record.get("output") is None:
            return None
        return PromptCase(id=case_id, prompt=prompt, expected=str(record["output"]), tags=tags)
    messages = record.get("messages")
    if isinstance(messages, list):
        last = max(
            (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None
        )
        if not last:  # no assistant turn, or nothing before it
            return None
        turns = [ChatMessage.model_validate(m) for m in messages[:last]]
        return PromptCase(
            id=case_id, messages=turns, expected=str(messages[last]["content"]), tags=tags
        )
    return None


def _tags(record: dict[str, Any]) -> list[str] | None:
    tags = record.get("tags") or (record.get("meta") or {}).get("tags")
    return [str(t) for t in tags] if isinstance(tags, list) and tags else None
