"""Writes pairs.jsonl: support questions with a helpful answer (chosen) and an unhelpful one
(rejected), for examples/finetune-dpo.yaml. Deterministic; run from this folder.

The rule the chosen answers follow and the rejected ones break: the answer names the place in
the app where the user fixes the problem (Settings, then the right page).
"""

from __future__ import annotations

import json
import random

TOPICS = {
    "reset my password": "Settings, then Security, and choose Reset password",
    "turn on two-factor sign in": "Settings, then Security, and turn on Two-factor",
    "see my storage quota": "Settings, then Storage, where the quota is shown",
    "make a shared link expire": "Share, then Link settings, and set an expiry date",
    "restore a deleted file": "Trash, select the file and choose Restore",
    "change my plan": "Settings, then Billing, and choose Change plan",
    "download an invoice": "Settings, then Billing, and open Invoices",
    "stop syncing a folder": "Settings, then Sync, and clear the folder's box",
}
ASKS = ["How do I {t}?", "Where can I {t}?", "I need to {t}, how?", "Can you tell me how to {t}?"]
UNHELPFUL = [
    "I am not sure, try searching online.",
    "That is not something I can help with.",
    "Please contact someone else about this.",
    "It depends, maybe restart your computer.",
]


def main() -> None:
    rng = random.Random(7)
    rows = []
    for _ in range(240):
        topic, where = rng.choice(sorted(TOPICS.items()))
        rows.append(
            {
                "prompt": rng.choice(ASKS).format(t=topic),
                "chosen": f"Open {where}.",
                "rejected": rng.choice(UNHELPFUL),
            }
        )
    with open("pairs.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
