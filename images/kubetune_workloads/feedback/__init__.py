"""The ``feedback`` step: count or collect the user feedback beyond a cursor.

``run(spec)`` lists the ``*.jsonl``/``*.jsonl.gz`` files under the FeedbackLoop's prefix, reads
the complete lines beyond ``spec.since_cursor_uri``, turns them into training records of the
base dataset's schema (prompt + chosen, correction or response; low ratings dropped) and, in
``collect`` mode, writes ``feedback.jsonl``, the advanced ``cursor.json``, ``results.json`` and
the manifest (last). See docs/feedback.md for the rules.
"""

from __future__ import annotations

from kubetune_workloads.feedback.runner import run

__all__ = ["run"]
