#!/usr/bin/env python3
"""Generate user feedback on the Nimbus Drive support assistant, as the app would log it.

Each line is one answered question with the user's verdict::

    {"prompt": "...", "response": "<what the assistant said>", "rating": 1-5 or null,
     "correction": "<an agent's fix>" or null}

A batch of 60 records (fixed seed, so rerunning gives the same bytes):

    good        30  the canonical answer, rated 4 or 5
    unrated      4  the canonical answer, no rating
    corrected   18  a wrong or vague answer rated 1 or 2, with the canonical answer as correction
    low-rated    8  a wrong answer rated 1 or 2 and no correction (minRating 3 drops them)

So 52 records are usable for training. The questions are the quickstart's training paraphrases
of its 40 intents (examples/quickstart/data/intents.py), never its held-out eval prompts.

    python examples/feedback-local/data/generate_feedback.py            # batch-1.jsonl
    python examples/feedback-local/data/generate_feedback.py --batch 2  # a batch for cycle c2

The files go to feedback/default/support-assistant-loop/: the folder of loop
default/support-assistant-loop in the feedback store feedback/ (the collector's layout,
STORE/NAMESPACE/LOOP), which is all the loop reads.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "quickstart" / "data"))

from intents import INTENTS  # noqa: E402

COUNTS = {"good": 30, "unrated": 4, "corrected": 18, "low_rated": 8}
VAGUE = [
    "Please contact support for help with this.",
    "I'm not sure, try restarting the app.",
    "You can find this in the settings somewhere.",
    "This is not possible in Nimbus Drive.",
]


def records(batch: int) -> list[dict[str, object]]:
    """One batch of feedback records, in a shuffled but fixed order."""
    rng = random.Random(1000 + batch)
    out: list[dict[str, object]] = []
    for kind, count in COUNTS.items():
        for _ in range(count):
            intent = rng.choice(INTENTS)
            prompt = rng.choice(intent.questions)
            if kind in ("good", "unrated"):
                rating = rng.choice([4, 5]) if kind == "good" else None
                out.append(_record(prompt, intent.answer, rating, None))
                continue
            other = rng.choice([i for i in INTENTS if i.key != intent.key])
            wrong = rng.choice([other.answer, *VAGUE])
            correction = intent.answer if kind == "corrected" else None
            out.append(_record(prompt, wrong, rng.choice([1, 2]), correction))
    rng.shuffle(out)
    return out


def _record(
    prompt: str, response: str, rating: int | None, correction: str | None
) -> dict[str, object]:
    return {"prompt": prompt, "response": response, "rating": rating, "correction": correction}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1, help="batch number (seed and file name)")
    args = parser.parse_args()
    path = HERE / "feedback" / "default" / "support-assistant-loop" / f"batch-{args.batch}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in records(args.batch)]
    # Written whole and renamed: the loop counts only complete lines of complete files.
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {len(lines)} records to {path}")


if __name__ == "__main__":
    main()
