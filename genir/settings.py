"""Typed settings: every method's configuration is a pydantic v2 model, and ``KEY=VALUE`` text becomes one here.

Why pydantic v2: it was already installed with genir's stack (typer and pyserini's OpenAI client require
it), so it costs no new dependency, and it is maintained and typed; a field's type, default, range (``Field(ge=...)``), choices
(``Literal[...]``) and help text (``Field(description=...)``) are declared once, on the model, and
everything else is read from there: the coercion of ``KEY=VALUE`` text (``"0.3"`` -> ``0.3``, ``"true"`` ->
``True``), the check of every value, ``genir methods`` (:func:`describe_fields`) and the manifest
(``model_dump(mode="json")``). Validation reports every bad field at once, each with its location, which
:func:`settings_error` turns into one message per key naming what that key allows. Hand-written parsing
(what genir had: dataclasses and a ``_convert`` per type) checked types only, so ranges and choices
were checked, or not, wherever a value was used.

Invariants:

* a :class:`Settings` object is valid: it is built only through validation (the constructor,
  :func:`parse_config`, :meth:`Settings.replace`) and frozen afterwards;
* a bad key or value raises one :class:`SettingsError` naming each bad key with what it allows
  (an unknown key: the list of known ones);
* ``parse_config(cls, settings.model_dump(mode="json")) == settings``: what a manifest stores loads
  back as the same settings (and so does an older manifest's text, ``"auto"``, ``"0.3"``).
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from genir.errors import GenirError

S = TypeVar("S", bound="Settings")

AUTO = "auto"
Auto = Literal["auto"]
"""The value of a setting that the model resolves itself (each such field says how)."""
Seed = Annotated[int, Field(ge=0, description="seeds what is drawn at random (samples, initialization, order)")]


class SettingsError(GenirError, ValueError):
    """A bad key or value for a settings model; the message names each bad key and what it allows."""


@dataclass(frozen=True)
class Shown:
    """``Annotated`` metadata: how to name a text field's form in messages (``DD:HH:MM:SS``) instead of "text"."""

    form: str


class Settings(BaseModel):
    """A frozen, validated settings model (module docstring). Unknown keys are refused; numbers must be finite."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, validate_default=True)

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise settings_error(type(self), e) from None

    def replace(self: S, **changes: Any) -> S:
        """A copy with ``changes``, validated as a new object is (pydantic's ``model_copy`` does not validate)."""
        return type(self)(**{**dict(self), **changes})


def parse_config(cls: type[S], overrides: Sequence[str] | Mapping[str, Any] = ()) -> S:
    """``cls`` from ``KEY=VALUE`` strings, or from a dict (a manifest's config); the rest are its defaults.

    Raises:
        SettingsError: a text that is not ``KEY=VALUE``, an unknown key, or a bad value.
    """
    items = overrides.items() if isinstance(overrides, Mapping) else (split_assignment(o) for o in overrides)
    return cls(**dict(items))


def split_assignment(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` as ``(key, value)``, both stripped (the value may be empty)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SettingsError(f"option {text!r} is not of the form KEY=VALUE")
    return key.strip(), value.strip()


def settings_error(cls: type[Settings], error: ValidationError) -> SettingsError:
    """One message for a failed validation: per bad key, its value and what it allows."""
    fields = cls.model_fields
    messages: dict[str, str] = {}
    for problem in error.errors():
        loc = problem["loc"]
        key = str(loc[0]) if loc else ""
        if key in messages:  # a union reports once per member: the key is named once
            continue
        if problem["type"] == "extra_forbidden":
            messages[key] = f"unknown option {key!r} for {cls.__name__} (known: {', '.join(fields)})"
        elif key in fields and problem["type"] == "value_error":  # a field validator's own words
            messages[key] = f"{key}={problem['input']!r}: {problem['msg'].removeprefix('Value error, ')}"
        elif key in fields:
            messages[key] = f"{key}={problem['input']!r}: expected {allowed(fields[key])}"
        else:  # a check across fields (a model validator)
            messages[key] = problem["msg"].removeprefix("Value error, ")
    return SettingsError("; ".join(messages.values()))


def allowed(field: FieldInfo) -> str:
    """What ``field`` accepts, in words: ``an integer >= 1``, ``auto or a number in [0, 1]``, ``one of a, b``."""
    return _allowed(field.annotation, field.metadata)


def _allowed(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    shown = next((m.form for m in metadata if isinstance(m, Shown)), None)
    if shown:
        return shown
    if get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        inner = [m for item in extra for m in (item.metadata if isinstance(item, FieldInfo) else [item])]
        return _allowed(base, [*metadata, *inner])
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    # Named values (a Literal's, true and false) are listed together; other members are described.
    values = [str(v) for m in members if get_origin(m) is Literal for v in get_args(m)]
    values += ["true", "false"] if bool in members else []
    described = [_described(m, metadata) for m in members if get_origin(m) is not Literal and m is not bool]
    choices = (values[0] if len(values) == 1 else "true or false" if values == ["true", "false"] else
               "one of " + ", ".join(values)) if values else ""
    return " or ".join([choices, *described] if choices else described)


def _described(annotation: Any, metadata: Sequence[Any]) -> str:
    if get_origin(annotation) is Annotated:
        return _allowed(annotation)
    names = {int: "an integer", float: "a number", str: "text", type(None): "none (empty)"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation))) + _bounds(metadata)


def _bounds(metadata: Sequence[Any]) -> str:
    """`` >= 1``, `` in [0, 1]``, `` in (0, 1)``... from a field's range metadata ('' when none)."""
    low = next(((m.ge, "[") for m in metadata if isinstance(m, annotated_types.Ge)), None) or \
        next(((m.gt, "(") for m in metadata if isinstance(m, annotated_types.Gt)), None)
    high = next(((m.le, "]") for m in metadata if isinstance(m, annotated_types.Le)), None) or \
        next(((m.lt, ")") for m in metadata if isinstance(m, annotated_types.Lt)), None)
    if low and high:
        return f" in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
    if low:
        return f" {'>=' if low[1] == '[' else '>'} {low[0]:g}"
    if high:
        return f" {'<=' if high[1] == ']' else '<'} {high[0]:g}"
    return ""


def describe_fields(cls: type[Settings]) -> Iterator[tuple[str, str, Any, str]]:
    """``(name, what it allows, default, help)`` of every field of ``cls``, in declaration order (``genir methods``)."""
    for name, field in cls.model_fields.items():
        yield name, allowed(field), field.default, field.description or ""
