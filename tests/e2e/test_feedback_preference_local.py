"""A FeedbackLoop with a preference stage under `kubetune plan` and `kubetune run`: pairs in the
feedback train DPO after SFT, and the challenger is promoted by its win rate against the
champion, judged by the example's rule judge on 127.0.0.1.

The loop is examples/feedback-preference as shipped: a tiny champion that answers "red",
feedback that prefers "blue" (24 pairs), a judge that prefers the answer saying "blue", and a
gate ``winRate >= 0.6``. The champion loses every case, so only a challenger that learned the
preference passes.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_local_run import kubetune, state, status_of

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "feedback-preference"
LOOP = "bulbs-loop"


@contextmanager
def rule_judge() -> Iterator[str]:
    """The example's judge (judge.py) on a free port of 127.0.0.1."""
    spec = importlib.util.spec_from_file_location("rule_judge", EXAMPLE / "judge.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = module.make_server(0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def example_with_judge(root: Path, judge_url: str) -> Path:
    """A copy of the example whose Evaluation asks the judge at ``judge_url``."""
    manifests = root / "m"
    shutil.copytree(EXAMPLE, manifests, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    path = manifests / "feedback-preference.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    docs[-1]["spec"]["evaluation"]["judge"]["url"] = judge_url
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return manifests


def test_kubetune_plan_shows_the_loop_collecting_preferences(tmp_path: Path) -> None:
    manifests = example_with_judge(tmp_path, "http://127.0.0.1:9/v1")
    planned = kubetune("plan", "-f", str(manifests), "--artifact-store", "pvc://store")
    assert planned.returncode == 0, planned.stderr
    objects = [o for o in yaml.safe_load_all(planned.stdout) if o]
    specs = [
        json.loads(o["data"]["spec.json"])
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(f"{LOOP}-feedback-")
    ]
    assert specs and all(s["preference"] is True for s in specs), specs


@pytest.mark.slow
def test_preference_feedback_trains_dpo_after_sft_and_promotes_by_win_rate(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "work"
    with rule_judge() as url:
        manifests = example_with_judge(tmp_path, url)
        result = kubetune("run", "-f", str(manifests), "--workdir", str(workdir), timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    stored: dict[str, Any] = state(workdir)["resources"]
    sft = stored[f"FinetuneJob/{LOOP}-c1"]["body"]["spec"]
    tuned = stored[f"FinetuneJob/{LOOP}-c1-pref"]["body"]["spec"]
    assert sft["objective"] == "instruction"
    assert tuned["objective"] == "preference" and tuned["preference"]["algorithm"] == "dpo"
    assert tuned["model"] == {"from": {"kind": "FinetuneJob", "name": f"{LOOP}-c1"}}
    data = stored[f"Dataset/{LOOP}-c1-pref"]["body"]["spec"]
    assert data["schema"] == "preference"
    assert status_of(workdir, f"Dataset/{LOOP}-c1-pref")["records"] == 24

    evaluation = status_of(workdir, f"Evaluation/{LOOP}-c1")
    assert evaluation["passed"] is True and evaluation["results"]["winRate"] == 1.0
    pref_model = status_of(workdir, f"FinetuneJob/{LOOP}-c1-pref")["outputUri"]
    loop = status_of(workdir, f"FeedbackLoop/{LOOP}")
    (c1,) = loop["history"]
    assert (c1["runId"], c1["reason"]) == ("c1", "Promoted"), c1
    assert "(trained: dpo after SFT on 24 pairs)" in c1["message"]
    assert c1["results"]["pairedRecords"] == 24
    assert c1["results"]["rewardAccuracy"] > 0.5 and c1["results"]["rewardMargin"] > 0
    assert loop["champion"] == pref_model and loop["championCycle"] == 1
    assert "promoted (trained: dpo after SFT on 24 pairs)" in result.stdout
    # The preference-tuned model is asked in the format it was trained with.
    info = json.loads(
        (Path(pref_model.removeprefix("file://")) / "kubetune-model.json").read_text()
    )
    assert info["instructionTemplate"] == "Q: {instruction}\nA: "
