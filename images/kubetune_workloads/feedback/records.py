"""One feedback line -> a usable training record, a low-rated drop, or a malformed line.

Field names come from :class:`kubetune.api.feedback.FeedbackFields` (a field set to None is
absent). The rules, in order: no (or empty) prompt -> malformed; a non-empty ``chosen`` is the
response (a preference pair; ``rejected`` is only counted); else a non-empty ``correction``;
else a thumbs down drops the record, and so does (without a thumbs label) a numeric rating
below ``minRating``; else the ``response`` (missing or empty -> malformed).

A **thumbs label** is the ``thumbs`` field the collector writes (``up``/``down``; also
true/false and the words of ``THUMBS``; without it, such a boolean or word in the rating
field), read whenever ratings are (``fields.rating`` is named):
it is binary, independent of the loop's rating scale, so up is good and down is bad whatever
``minRating`` is. A line with both trusts the label.

Usable records are written in the base dataset's schema with the canonical field names
dataprep reads, plus ``feedback_source`` ("<relative path>:<line>").

For a preference stage (:func:`preference_signal`) a line may also give a **pair** (``chosen``
and ``rejected``, else a ``correction`` preferred to the ``response``) or a **rated answer**
(the ``response`` with a thumbs up/down: the thumbs label, else a rating of at least
``minRating``, or above 0 when unset, is desirable; true/false and up/down, good/bad,
thumbs_up/thumbs_down in the rating field are read too).
They are written in schema ``preference``: pairs as prompt/chosen/rejected, and, for KTO,
every pair split in two plus the rated answers as prompt/completion/label.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from kubetune.api.dataset import RecordSchema
from kubetune.api.feedback import FeedbackSource

ResponseOrigin = Literal["response", "correction", "chosen"]
PROVENANCE_FIELD = "feedback_source"
THUMBS_FIELD = "thumbs"  # the collector's label (docs/feedback.md "The collector")


@dataclass(frozen=True)
class Usable:
    """A prompt and the response to train on, and where the response came from."""

    prompt: str
    response: str
    origin: ResponseOrigin
    has_rejected: bool = False


@dataclass(frozen=True)
class LowRating:
    """Rated below ``minRating``, or thumbs down (``rating`` None), with neither a correction
    nor a chosen response."""

    rating: float | None


@dataclass(frozen=True)
class Malformed:
    """A line that is not a usable record, and why (no record content in ``why``)."""

    why: str


Outcome = Usable | LowRating | Malformed


@dataclass(frozen=True)
class PreferencePair:
    """A prompt with a preferred and a rejected answer."""

    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class RatedAnswer:
    """A prompt and an answer labelled desirable (thumbs up) or undesirable (thumbs down)."""

    prompt: str
    completion: str
    desirable: bool


PreferenceSignal = PreferencePair | RatedAnswer
THUMBS = {
    "up": True,
    "down": False,
    "thumbs_up": True,
    "thumbs_down": False,
    "good": True,
    "bad": False,
    "desirable": True,
    "undesirable": False,
    "true": True,
    "false": False,
}


def parse_line(data: bytes | None) -> dict[str, Any] | Malformed:
    """The JSON object on one line, or why it is not one."""
    if data is None:
        return Malformed("line too long")
    try:
        value = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return Malformed(f"invalid JSON ({type(exc).__name__}: {_short(str(exc))})")
    except RecursionError:
        return Malformed("invalid JSON (nested too deeply to read)")
    if not isinstance(value, dict):
        return Malformed(f"a JSON {type(value).__name__}, not an object")
    return value


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text(row: dict[str, Any], field: str | None) -> str | Malformed | None:
    """The text of ``field``: None when unnamed (None or ""), missing, null or blank."""
    if not field:
        return None
    value = row.get(field)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return Malformed(f"field {field!r} is a {type(value).__name__}, not text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
        return Malformed(f"field {field!r} holds text that is not valid Unicode")
    return value if value.strip() else None


def _rating(row: dict[str, Any], field: str | None) -> float | None:
    """The rating as a finite number; None when unnamed, absent or not numeric."""
    if not field:
        return None
    value = row.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def classify(row: dict[str, Any], source: FeedbackSource) -> Outcome:
    """Apply the feedback rules to one parsed record."""
    fields = source.fields
    prompt = _text(row, fields.prompt)
    if isinstance(prompt, Malformed):
        return prompt
    if prompt is None:
        return Malformed(f"missing or empty prompt field {fields.prompt!r}")
    chosen = _text(row, fields.chosen)
    if isinstance(chosen, Malformed):
        return chosen
    if chosen is not None:
        rejected = _text(row, fields.rejected)
        return Usable(prompt, chosen, "chosen", has_rejected=isinstance(rejected, str))
    correction = _text(row, fields.correction)
    if isinstance(correction, Malformed):
        return correction
    if correction is not None:
        return Usable(prompt, correction, "correction")
    thumbs = thumbs_label(row, fields.rating)
    if thumbs is False:
        return LowRating(None)
    if thumbs is None and source.min_rating is not None:
        rating = _rating(row, fields.rating)
        if rating is not None and rating < source.min_rating:
            return LowRating(rating)
    response = _text(row, fields.response)
    if isinstance(response, Malformed):
        return response
    if response is None:
        return Malformed(f"missing or empty response field {fields.response!r}")
    return Usable(prompt, response, "response")


def training_record(usable: Usable, schema: RecordSchema, provenance: str) -> dict[str, Any]:
    """The record dataprep reads for ``schema``, with its ``feedback_source``."""
    record: dict[str, Any]
    if schema == "instruction":
        record = {"instruction": usable.prompt, "input": "", "output": usable.response}
    elif schema == "chat":
        record = {
            "messages": [
                {"role": "user", "content": usable.prompt},
                {"role": "assistant", "content": usable.response},
            ]
        }
    else:
        record = {"text": usable.prompt + "\n\n" + usable.response}
    record[PROVENANCE_FIELD] = provenance
    return record


def thumbs_label(row: dict[str, Any], rating_field: str | None) -> bool | None:
    """The record's thumbs label (up: True, down: False); None without one, or when ratings
    are not used (``rating_field`` unnamed) or the label is not one of ``THUMBS``. Without a
    ``thumbs`` field, a boolean or a word of ``THUMBS`` in the rating field is the label (a
    hand-written ``"rating": "thumbs_down"`` is a thumbs down, not an unreadable rating)."""
    if not rating_field:
        return None
    value = row.get(THUMBS_FIELD)
    if value is None:
        value = row.get(rating_field)
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return THUMBS.get(value.strip().lower())
    return None


def _thumb(row: dict[str, Any], field: str | None, min_rating: float | None) -> bool | None:
    """A rating read as thumbs up (True) or down (False); None when absent or unreadable."""
    if not field:
        return None
    value = row.get(field)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in THUMBS:
        return THUMBS[value.strip().lower()]
    rating = _rating(row, field)
    if rating is None:
        return None
    return rating >= min_rating if min_rating is not None else rating > 0


def preference_signal(row: dict[str, Any], source: FeedbackSource) -> PreferenceSignal | None:
    """The pair or rated answer a parsed record gives a preference stage, if any."""
    fields = source.fields
    texts = {
        name: _text(row, getattr(fields, name))
        for name in ("prompt", "chosen", "rejected", "correction", "response")
    }
    prompt, chosen, rejected = texts["prompt"], texts["chosen"], texts["rejected"]
    correction, response = texts["correction"], texts["response"]
    if not isinstance(prompt, str):
        return None
    if isinstance(chosen, str) and isinstance(rejected, str):
        return PreferencePair(prompt, chosen, rejected) if chosen != rejected else None
    if isinstance(correction, str) and isinstance(response, str) and correction != response:
        return PreferencePair(prompt, correction, response)
    thumb = thumbs_label(row, fields.rating)
    if thumb is None:
        thumb = _thumb(row, fields.rating, source.min_rating)
    if thumb is not None and isinstance(response, str):
        return RatedAnswer(prompt, response, thumb)
    return None


def preference_records(
    signal: PreferenceSignal, provenance: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The paired record (pairs only) and the unpaired KTO records of one signal."""
    where = {PROVENANCE_FIELD: provenance}
    if isinstance(signal, RatedAnswer):
        unpaired = {"prompt": signal.prompt, "completion": signal.completion}
        return None, [{**unpaired, "label": signal.desirable, **where}]
    pair = {"prompt": signal.prompt, "chosen": signal.chosen, "rejected": signal.rejected}
    split = [
        {"prompt": signal.prompt, "completion": signal.chosen, "label": True, **where},
        {"prompt": signal.prompt, "completion": signal.rejected, "label": False, **where},
    ]
    return {**pair, **where}, split
