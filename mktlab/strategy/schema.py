"""The JSON Schema of a strategy document, and a check that names the bad path.

The schema catches structural mistakes (an unknown key, a string where a number goes)
before the dataclasses check meaning (a rate outside [0, 1], an unknown template). It is
published so editors and the campaign tools can validate a YAML file on their own:
``mktlab strategy schema`` prints it.
"""

from __future__ import annotations

from typing import Any

from mktlab.errors import ValidationError

_DURATION = {"type": ["string", "integer"]}
_NUMBER = {"type": "number"}

STRATEGY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://mktlab.dev/schemas/strategy.json",
    "title": "mktlab strategy",
    "type": "object",
    "required": ["name", "policy"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "version": {"type": "integer", "minimum": 1},
        "description": {"type": "string"},
        "campaign_id": {"type": ["string", "null"]},
        "audience": {"type": ["string", "null"]},
        "holdout": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "salt": {"type": ["string", "null"]},
        "policy": {
            "oneOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "required": ["kind"],
                    "additionalProperties": False,
                    "properties": {
                        "kind": {
                            "enum": ["none", "all", "random", "uplift_threshold", "rule", "logged"]
                        },
                        "rate": _NUMBER,
                        "seed": {"type": "integer"},
                        "model": {"type": "string"},
                        "threshold": _NUMBER,
                        "top_fraction": _NUMBER,
                        "arm": {},
                        "lookback": _DURATION,
                    },
                },
            ]
        },
        "rules": {"type": ["string", "object", "null"]},
        "coupon": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {
                "face_value": _NUMBER,
                "send_cost": _NUMBER,
                "margin": _NUMBER,
                "channel": {"type": "string"},
            },
        },
        "budget": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {
                "max_coupons": {"type": ["integer", "null"], "minimum": 0},
                "max_spend": {"type": ["number", "null"], "minimum": 0},
            },
        },
        "caps": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "required": ["max", "per"],
                "additionalProperties": False,
                "properties": {
                    "channel": {"type": ["string", "null"]},
                    "max": {"type": "integer", "minimum": 0},
                    "per": _DURATION,
                },
            },
        },
        "channels": {
            "type": ["array", "null"],
            "items": {"enum": ["push", "sms", "wechat", "inapp", "email", "webhook"]},
        },
        "templates": {
            "type": ["object", "null"],
            "additionalProperties": {
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {
                        "type": "object",
                        "required": ["body"],
                        "additionalProperties": False,
                        "properties": {
                            "body": {"type": "string", "minLength": 1},
                            "title": {"type": "string"},
                            "channels": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                ]
            },
        },
    },
}


def check_schema(doc: Any, *, what: str = "strategy") -> None:
    """Raise :class:`ValidationError` naming the path of the first schema violation."""
    import jsonschema

    if not isinstance(doc, dict):
        raise ValidationError(f"{what}: expected a mapping, got {type(doc).__name__}")
    if isinstance(doc.get("policy"), str):  # the short form `policy: all`
        doc = {**doc, "policy": {"kind": doc["policy"]}}
    validator = jsonschema.Draft202012Validator(STRATEGY_SCHEMA)
    # best_match descends into oneOf branches, so the message names the deepest field
    err = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if err is not None:
        path = ".".join([what, *map(str, err.absolute_path)])
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            raise ValidationError(f"{path}: unknown key(s) {extra}")
        raise ValidationError(f"{path}: {err.message}")
