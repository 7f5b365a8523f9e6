"""The Compression controller: waits for its source model, then one compress Job per run."""

from __future__ import annotations

from kubetune.controllers.base import KindController

CONTROLLER = KindController(kind="Compression")
