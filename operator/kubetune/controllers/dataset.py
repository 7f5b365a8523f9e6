"""The Dataset controller: one dataprep Job per generation; Ready with version and counts."""

from __future__ import annotations

from kubetune.controllers.base import KindController

CONTROLLER = KindController(kind="Dataset")
