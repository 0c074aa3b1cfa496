"""The JSON Schema: valid 2020-12, strict, self-explaining, and in step with the Profile dataclasses."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from support import EXAMPLES

from plexus.profile import model
from plexus.resources import schema_path

SCHEMA = json.loads(schema_path().read_text())


def properties(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, sub in node.get("properties", {}).items():
        yield f"{path}.{name}".lstrip("."), sub
        yield from properties(sub, f"{path}.{name}")
        if "items" in sub:
            yield from properties(sub["items"], f"{path}.{name}[]")


def test_schema_is_valid_2020_12_and_strict() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    objects = [SCHEMA, *(sub for _, sub in properties(SCHEMA) if sub.get("type") == "object"),
               *(sub["items"] for _, sub in properties(SCHEMA) if "items" in sub and "properties" in sub["items"])]
    for node in objects:
        if "properties" in node:
            assert node.get("additionalProperties") is False, node.get("description")


def test_every_property_has_description_and_example() -> None:
    for path, sub in properties(SCHEMA):
        assert sub.get("description"), path
        assert sub.get("examples"), path


def test_schema_keys_match_the_model() -> None:
    def fields(cls: type) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    top = set(SCHEMA["properties"]) - {"extends"}
    assert top == fields(model.Profile) - {"name", "path", "warnings"}
    rendezvous = SCHEMA["properties"]["rendezvous"]["properties"]
    assert set(rendezvous) == (fields(model.Rendezvous) | {"smime", "psk"})
    assert set(rendezvous["smime"]["properties"]) == fields(model.Authentication) - {"method", "psk"}
    assert set(rendezvous["email"]["properties"]) == fields(model.EmailRendezvous)
    assert set(rendezvous["email"]["properties"]["imap"]["properties"]) == fields(model.ImapServer)
    assert set(rendezvous["email"]["properties"]["smtp"]["properties"]) == fields(model.MailServer)
    assert set(rendezvous["dht"]["properties"]) == fields(model.DhtRendezvous)
    for name, cls in (("stun", model.Stun), ("punch", model.Punch), ("payload", model.Payload),
                      ("host", model.Host)):
        assert set(SCHEMA["properties"][name]["properties"]) == fields(cls), name
    assert set(SCHEMA["properties"]["peers"]["items"]["properties"]) == fields(model.Peer)


def test_examples_carry_the_modeline_and_pass_the_schema_alone() -> None:

    examples = EXAMPLES
    validator = Draft202012Validator(SCHEMA)
    for path in examples.glob("*.yaml"):
        text = path.read_text()
        assert text.startswith("# yaml-language-server: $schema=../../schemas/profile.schema.json"), path
        errors = [e for e in validator.iter_errors(yaml.safe_load(text)) if e.validator != "required"]
        assert errors == [], (path, errors)
