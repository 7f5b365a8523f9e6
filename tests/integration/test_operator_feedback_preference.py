"""A FeedbackLoop with ``training.preference`` run by the real operator against the API
emulator: the collect Job reports pairs, and the cycle renders and runs a preference Dataset and
a DPO FinetuneJob from the SFT FinetuneJob's model, compresses and evaluates that one, and
records the algorithm and its reward accuracy when it is promoted."""

from __future__ import annotations

import json
from typing import Any

from tests.emulator import Emulator, Kubelet
from tests.integration.conftest import (
    COMPRESSIONS,
    DATASETS,
    EVALUATIONS,
    FEEDBACKLOOPS,
    FINETUNEJOBS,
    NS,
    step_result,
    succeeded_finetune,
    wait_job,
)
from tests.integration.test_operator_feedback import (
    CHAMPION_URI,
    COLLECT,
    CYCLE,
    DEPLOYMENTS,
    LoopOperator,
    clock,  # noqa: F401  (fixture)
    count,
    loop_manifest,
    loop_operator,  # noqa: F401  (fixture)
    served_model,
    server_deployment,
    wait_loop,
    wait_new_count_job,
)

PREF = f"{CYCLE}-pref"
CHALLENGER = "s3://out/loop-c1-pref-nf4"


def preference_loop() -> dict[str, Any]:
    body = loop_manifest()
    body["spec"]["training"] = {"preference": {"algorithm": "auto", "beta": 0.2}}
    return body


def test_pairs_run_a_dpo_stage_after_sft_under_the_operator(
    emu: Emulator,
    kubelet: Kubelet,
    loop_operator: LoopOperator,  # noqa: F811
) -> None:
    with loop_operator():
        succeeded_finetune(emu, kubelet)
        emu.create(DEPLOYMENTS, server_deployment())
        emu.create(FEEDBACKLOOPS, preference_loop(), admit=True)
        count(emu, kubelet, wait_new_count_job(emu, []), pending=9)
        wait_job(emu, COLLECT)
        spec_map = emu.get("configmaps", NS, f"{COLLECT}-spec") or {}
        assert json.loads(spec_map["data"]["spec.json"])["preference"] is True
        collected = {"usedRecords": 9, "pairedRecords": 6, "desirableRecords": 1}
        kubelet.succeed(NS, COLLECT, step_result("feedback", metrics=collected))

        for resource, name in (
            (DATASETS, CYCLE),
            (FINETUNEJOBS, CYCLE),
            (DATASETS, PREF),
            (FINETUNEJOBS, PREF),
            (COMPRESSIONS, CYCLE),
            (EVALUATIONS, CYCLE),
        ):
            child = emu.wait_for(resource, NS, name, timeout=15)
            stage = child["metadata"]["labels"].get("kubetune.dev/cycle-stage")
            assert stage == ("preference" if name == PREF else None), (resource, name)
        tuned = emu.get(FINETUNEJOBS, NS, PREF)
        assert tuned is not None
        assert tuned["spec"]["objective"] == "preference"
        assert tuned["spec"]["preference"]["algorithm"] == "dpo"
        assert tuned["spec"]["model"]["from"] == {"kind": "FinetuneJob", "name": CYCLE}
        pref_data = emu.get(DATASETS, NS, PREF)
        assert pref_data is not None and pref_data["spec"]["schema"] == "preference"
        compression = emu.get(COMPRESSIONS, NS, CYCLE)
        assert compression is not None
        assert compression["spec"]["model"] == {"kind": "FinetuneJob", "name": PREF}

        for job, result in (
            (f"{CYCLE}-dataprep-g1", step_result("dataprep", outputUri="s3://out/sft-data")),
            (f"{CYCLE}-finetune-g1", step_result("finetune", outputUri="s3://out/sft")),
            (f"{PREF}-dataprep-g1", step_result("dataprep", outputUri="s3://out/pref-data")),
            (
                f"{PREF}-finetune-g1",
                step_result(
                    "finetune",
                    outputUri="s3://out/pref",
                    metrics={"rewardAccuracy": 0.9, "rewardMargin": 0.7},
                ),
            ),
            (f"{CYCLE}-compress-g1", step_result("compress", outputUri=CHALLENGER)),
            (
                f"{CYCLE}-evaluate-g1",
                step_result("evaluate", metrics={"winRate": 0.8}, passed=True),
            ),
        ):
            wait_job(emu, job)
            kubelet.succeed(NS, job, result)

        status = wait_loop(emu, lambda s: s.get("championCycle") == 1)
        assert (status["champion"], status["championTrainingUri"]) == (CHALLENGER, "s3://out/pref")
        [record] = status["history"]
        assert record["reason"] == "Promoted"
        assert "(trained: dpo after SFT on 6 pairs)" in record["message"]
        assert record["results"]["winRate"] == 0.8
        assert record["results"]["rewardAccuracy"] == 0.9
        assert record["results"]["pairedRecords"] == 6
    assert served_model(emu) == CHALLENGER != CHAMPION_URI
