"""The dataprep step: curate, clean, de-duplicate, redact, balance, tokenize, split, version.

``python -m kubetune_workloads dataprep --spec FILE`` calls :func:`run`. The stages live in
small modules: sources/formats/streams (reading), schema (mapping), cleaning/quality/curation,
pii and :mod:`kubetune_workloads.lexicon` (safety), dedup/minhash/decontam, balance, tokens,
stages (the ordered stage registry), filters and pipeline (the two passes), engine/shards
(datatrove tasks), output/report (artifact files) and step (the entry point).
"""

from kubetune_workloads.dataprep.step import run

__all__ = ["run"]
