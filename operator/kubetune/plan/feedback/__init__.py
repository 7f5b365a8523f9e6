"""The FeedbackLoop planner: follow cycles, promote winners, start cycles when triggered.

* :mod:`.planner`: :func:`plan_feedback`, the phases of one reconciliation;
* :mod:`.children`: what a loop creates (its feedback Jobs, a cycle's resources);
* :mod:`.cycles`: where each cycle stands, read from its Job and resources;
* :mod:`.triggers`: when a cycle starts (records, schedule, drift, by hand);
* :mod:`.status`: the loop's status, conditions and events.
"""

from kubetune.plan.feedback.planner import plan_feedback

__all__ = ["plan_feedback"]
