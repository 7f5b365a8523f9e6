"""The base of every kubetune API model: camelCase wire names, closed schemas, CEL rules.

Cross-field rules are written once, in CEL, on the model class (``__cel_rules__``). The CRD
generator copies them into ``x-kubernetes-validations`` so the API server enforces them, and
the model validator below evaluates the very same expressions (with cel-python) so
``kubetune validate``, the planners and the workloads reject exactly what the cluster would.
"""

from __future__ import annotations

import functools
import json
from typing import Any, ClassVar, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError


class CelRule(TypedDict):
    """One ``x-kubernetes-validations`` entry."""

    rule: str
    message: str
    fieldPath: NotRequired[str]
    reason: NotRequired[str]


def _add_cel_rules(schema: dict[str, Any], cls: type[Any]) -> None:
    rules = getattr(cls, "__cel_rules__", ())
    if rules:
        schema["x-kubernetes-validations"] = [dict(r) for r in rules]


@functools.cache
def _compiled(rule: str) -> Any:
    import celpy  # cel-python: pure Python, imported lazily to keep startup fast

    env = celpy.Environment()
    return env.program(env.compile(rule))


def evaluate_cel(rule: str, value: Any, old: Any = None) -> bool:
    """Evaluate one CEL rule with ``self`` (and ``oldSelf`` when given) bound to JSON values.

    An evaluation error (a missing key, a type mismatch) counts as a failed rule, as it does in
    kube-apiserver.
    """
    from celpy.adapter import json_to_cel

    activation = {"self": json_to_cel(value)}
    if old is not None:
        activation["oldSelf"] = json_to_cel(old)
    try:
        result = _compiled(rule).evaluate(activation)
    except Exception:
        return False
    return bool(result) if not isinstance(result, Exception) else False


@functools.lru_cache(maxsize=8192)
def _first_failed_rule(rules: tuple[str, ...], value_json: str) -> int | None:
    """Index of the first rule the value breaks (cached: planners re-validate the same specs)."""
    value = json.loads(value_json)
    for index, rule in enumerate(rules):
        if not evaluate_cel(rule, value):
            return index
    return None


class KubeModel(BaseModel):
    """Base for spec/status models: camelCase aliases, unknown fields rejected, CEL rules."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra=_add_cel_rules,
        validate_default=False,
    )

    __cel_rules__: ClassVar[tuple[CelRule, ...]] = ()

    @model_validator(mode="after")
    def _check_cel_rules(self) -> KubeModel:
        rules = type(self).__cel_rules__
        if not rules:
            return self
        value = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        failed = _first_failed_rule(
            tuple(r["rule"] for r in rules), json.dumps(value, sort_keys=True)
        )
        if failed is not None:
            rule = rules[failed]
            where = rule.get("fieldPath", "")
            raise PydanticCustomError(
                "cel_rule",
                "{where}{message}",
                {"where": f"{where.lstrip('.')}: " if where else "", "message": rule["message"]},
            )
        return self

    def wire(self) -> dict[str, Any]:
        """The object as it appears in YAML/JSON (camelCase, unset fields omitted)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
