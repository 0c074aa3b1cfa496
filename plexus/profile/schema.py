"""Check a profile document against ``schemas/profile.schema.json`` and say each failure the way a person
would: at the line and column of the offending node, with the fix."""

from __future__ import annotations

import difflib
import json
from functools import cache
from typing import Any

from plexus.profile.document import Document
from plexus.profile.problems import FieldPath

# what a value matching a $defs pattern looks like, for "must be ..." messages
_PATTERN_WORDS = {
    "duration": "a duration like 500ms, 30s, 2m or 1h (or a number of seconds)",
    "endpoint": "host:port, e.g. stun.example.org:3478",
}
_ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
_TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "object": "a mapping", "array": "a list", "null": "empty"}


@cache
def load_schema() -> dict[str, Any]:
    from plexus.resources import schema_path

    schema: dict[str, Any] = json.loads(schema_path().read_text())
    return schema


def check_schema(document: Document, *, base: bool = False) -> None:
    """Add a problem per schema failure. ``base``: the document is a base profile; missing keys are fine."""
    from jsonschema import Draft202012Validator

    schema = load_schema()
    validator = Draft202012Validator(schema)
    for error in validator.iter_errors(document.data):
        if base and error.validator == "required":
            continue
        _report(document, schema, error)


def _report(document: Document, schema: dict[str, Any], error: Any) -> None:
    path: FieldPath = tuple(error.absolute_path)
    kind, value, instance, sub = error.validator, error.validator_value, error.instance, error.schema
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = sorted(sub.get("properties", {}))
        for key in instance:
            if key not in known:
                document.problem((*path, key), f"unknown key '{key}'", _did_you_mean(key, known), key=True)
    elif kind == "required" and isinstance(instance, dict):
        strays = [key for key in instance if key not in sub.get("properties", {})]
        for name in value:
            if name not in instance and not difflib.get_close_matches(name, strays, n=1, cutoff=0.6):
                # (a misspelt key close to ``name`` already got "unknown key ... did you mean")
                example = sub.get("properties", {}).get(name, {}).get("examples", [None])[0]
                hint = f"add {name}: {_sketch(example)}" if example is not None else f"add {name}"
                document.problem((*path, name), "missing", hint)
    elif kind == "type":
        document.problem(path, f"must be {_types(value)}, not {_describe(instance)}")
    elif kind in ("enum", "const"):
        options = value if kind == "enum" else [value]
        close = _did_you_mean(str(instance), [str(o) for o in options]) if isinstance(instance, str) else None
        document.problem(path, f"must be {' | '.join(_show(o) for o in options)}, not {_show(instance)}", close)
    elif kind == "pattern":
        document.problem(path, f"must be {_pattern_words(schema, sub)}, not {_show(instance)}")
    elif kind == "propertyNames":
        document.problem(path, f"{_show(instance)} is not a usable variable name",
                         "use letters, digits and _, starting with a letter or _")
    elif kind in ("minimum", "exclusiveMinimum"):
        document.problem(path, f"must be at least {value}, not {_show(instance)}")
    elif kind in ("maximum", "exclusiveMaximum"):
        document.problem(path, f"must be at most {value}, not {_show(instance)}")
    elif kind == "minItems":
        document.problem(path, f"needs at least {value} {'entry' if value == 1 else 'entries'}")
    elif kind == "minLength":
        document.problem(path, "must not be empty")
    elif kind == "maxLength":
        document.problem(path, f"is {len(instance)} characters long, more than {value}", "use a shorter one")
    elif kind in ("minProperties", "maxProperties"):
        names = ", ".join(sub.get("properties", {}))
        document.problem(path, f"give exactly one of: {names}", "e.g. {env: PLEXUS_MAIL_PASSWORD}")
    else:
        document.problem(path, " ".join(str(error.message).split())[:200])


def _did_you_mean(word: str, options: list[str]) -> str | None:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if options and len(options) <= 12:
        return "expected one of: " + ", ".join(options)
    return None


def _pattern_words(schema: dict[str, Any], sub: dict[str, Any]) -> str:
    if sub.get("pattern") == _ID_PATTERN:
        return "an id of letters, digits, '.', '_' and '-'"
    for name, definition in schema.get("$defs", {}).items():
        if definition.get("pattern") == sub.get("pattern") and name in _PATTERN_WORDS:
            return _PATTERN_WORDS[name]
    for definition in schema.get("$defs", {}).values():  # a pattern inside a definition (secret.env)
        for prop in definition.get("properties", {}).values():
            if prop.get("pattern") == sub.get("pattern"):
                return f"like {_show(prop['examples'][0])}"
    example = sub.get("examples", [None])[0]
    return f"like {_show(example)}" if example is not None else f"text matching {sub.get('pattern')}"


def _sketch(example: Any) -> str:
    """A short YAML-ish outline of an example value: ``{id: 'laptop', address: ...}``."""
    if isinstance(example, list):
        return f"[{_sketch(example[0])}, ...]" if example else "[]"
    if isinstance(example, dict):
        shown = [f"{k}: {_sketch(v) if isinstance(v, (dict, list)) else _show(v)}" for k, v in example.items()]
        text = "{" + ", ".join(shown) + "}"
        return text if len(text) <= 70 else "{" + ", ".join(f"{k}: ..." for k in example) + "}"
    return _show(example)


def _types(value: Any) -> str:
    names: list[str] = value if isinstance(value, list) else [value]
    return " or ".join(_TYPE_WORDS.get(name) or name for name in names)


def _describe(instance: Any) -> str:
    if instance is None:
        return "empty"
    if isinstance(instance, bool):
        return f"{str(instance).lower()}"
    if isinstance(instance, (int, float)):
        return f"the number {instance}"
    if isinstance(instance, str):
        return f"the text {_show(instance)}"
    if isinstance(instance, dict):
        return "a mapping"
    if isinstance(instance, list):
        return "a list"
    return type(instance).__name__


def _show(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return "'" + text.encode("unicode_escape").decode("ascii") + "'"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)
