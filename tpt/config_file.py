"""Reading a config file, the one way tpt does (pipeline, training and experiment configs): strict YAML, the
command line's `key.sub=value` overrides, and one error that names every problem by its key."""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """A config file that cannot be used, with every problem in one message."""


Loaded = TypeVar("Loaded", bound=BaseModel)


def load_yaml_config(path: str | Path, model: type[Loaded], overrides: Sequence[str] = (), kind: str = "",
                     resolve: Callable[[dict[str, Any], Path], None] | None = None) -> Loaded:
    """The one way tpt reads a config file (a pipeline's, a training's, an experiment's): read it strictly
    (`load_yaml`), set each `key.sub=value` override (`apply_override`; relative paths in one are relative to where
    the command runs, as any path on a command line), make the file's own relative paths absolute (`resolve`),
    and validate it, every problem named by its key in one error."""
    path, what = Path(path), f"{kind} config".strip()
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what} file")
    raw = load_yaml(path)
    raw = {} if raw is None else raw  # an empty file: every key at its default
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    if resolve is not None:
        resolve(raw, path)
    for override in overrides:
        apply_override(raw, override)
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problems = "\n".join(f"  {describe_error(model, e)}" for e in error.errors())
        raise ConfigError(f"{path}: invalid {what}\n{problems}") from None


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set `a.b.c=value` in the raw YAML mapping; the value is parsed as YAML (so 10, true, [1, 2] keep their types)."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r}: expected key.sub=value")
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is a {type(child).__name__}, not a section")
        node = child
    node[leaf] = yaml.safe_load(value)


MAX_DEPTH = 32  # levels of nesting in a config; the deepest tpt reads is 5


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping, where plain YAML keeps the last and hides a mistake."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` brings keys that this mapping may override
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise ConfigError(f"key {key!r} is given twice in one mapping (lines {seen[key]} and {line})")
            seen[key] = line
        return super().construct_mapping(node, deep)


def load_yaml(path: Path) -> Any:
    """A config file's YAML: a key given twice, or nesting deeper than any config has, is a ConfigError naming the file."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read (a config is a few levels deep)") from None
    deep = _too_deep(raw, ())
    if deep is not None:
        named = deep[:max((i + 1 for i, part in enumerate(deep) if isinstance(part, str)), default=0)]  # up to its last key
        raise ConfigError(f"{path}: {'.'.join(map(str, named)) or '(top level)'}: nested more than {MAX_DEPTH} levels deep")
    return raw


def _too_deep(value: Any, key: tuple) -> tuple | None:
    """Where `value` nests more than MAX_DEPTH levels (the keys and indices down to there), or None."""
    if len(key) > MAX_DEPTH:
        return key
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return next((deep for name, child in children if (deep := _too_deep(child, (*key, name))) is not None), None)


def describe_error(model: type[BaseModel], error: dict[str, Any]) -> str:
    """One line for a pydantic error: the dotted key, what is wrong, what is allowed."""
    loc = error["loc"]
    key = ".".join(str(part) for part in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        return f"{key}: unknown key; allowed keys here: {', '.join(allowed)}"
    return f"{key}: {error['msg']}"


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the section found by following `loc` from `model`."""
    annotation: Any = model
    for part in loc:
        if isinstance(part, int):  # an item of list[X]: X
            annotation = typing.get_args(annotation)[0]
            continue
        annotation = _model_of(annotation).model_fields[part].annotation
    return list(_model_of(annotation).model_fields)


def _model_of(annotation: Any) -> type[BaseModel]:
    """The BaseModel inside an annotation such as `X`, `X | None` or `list[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        try:
            return _model_of(arg)
        except TypeError:
            continue
    raise TypeError(f"no section model in {annotation!r}")
