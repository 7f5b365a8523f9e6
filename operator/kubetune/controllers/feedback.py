"""The FeedbackLoop controller: status only (the planner reports what this version supports)."""

from __future__ import annotations

from kubetune.controllers.base import KindController

CONTROLLER = KindController(kind="FeedbackLoop")
