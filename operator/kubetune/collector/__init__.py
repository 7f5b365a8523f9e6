"""``kubetune collector``: an HTTP service that writes feedback into a FeedbackLoop's store.

Applications and serving gateways POST feedback records (ratings, corrections, preference
pairs, OpenAI chat-completion request/response pairs) to ``/v1/feedback/{namespace}/{loop}``.
A 200 is sent only once the records are in a committed segment of the loop's feedback store,
in the JSONL format the loop's collect step reads; a record id seen within the retention window
is acknowledged and not written again. See docs/feedback.md ("The collector").
"""

from __future__ import annotations
