"""Configs in and out: defaults, then a YAML file, then `key.sub=value` overrides, validated once; and back to
plain data (YAML, a tracker's flat hparams). Everything a user can get wrong here is a `UserError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from dcgan.config.schema import Config
from dcgan.errors import UserError


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML-ready data (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else _plain(value)
    return out


def to_flat_dict(cfg: Any) -> dict[str, Any]:
    """The config as `section.key: scalar` pairs (lists as text), the shape trackers' hparams want."""
    return {k: str(v) if isinstance(v, list) or v is None else v for k, v in to_flat_values(cfg).items()}


def yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def to_flat_values(cfg: Any) -> dict[str, Any]:
    """A config (or its `to_dict` form) as `{dotted key: plain value}`."""
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[prefix + key] = value

    walk(cfg if isinstance(cfg, dict) else to_dict(cfg), "")
    return flat


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file, then `a.b=value` overrides; validated once."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"override {item!r} is not KEY=VALUE (for example train.epochs=5)")
        _set_dotted(raw, key.strip(), _Text(text))
    cfg = _build(Config, raw, prefix="")
    cfg.validate()
    return cfg


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise UserError(f"cannot read config file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"config file {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys, not a {type(data).__name__}")
    return data


class _Text(str):
    """An override's value as typed; parsed as YAML only where the field is not a string."""


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _wants_text(hint: Any) -> bool:
    if typing.get_origin(hint) is Literal:
        return all(isinstance(a, str) for a in typing.get_args(hint))
    return hint is str


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"config key {key}: {part} is a value, not a section")
        node = child
    node[last] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise UserError(f"config key {prefix.rstrip('.')}: expected a section of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise UserError(_unknown_key(prefix + str(key), [prefix + n for n in names]))
    kwargs = {}
    for name in names:
        if name not in raw:
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, raw[name], prefix + name + ".")
        else:
            kwargs[name] = _coerce(raw[name], hint, prefix + name)
    return cls(**kwargs)


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else f"; known keys here: {', '.join(sorted(known))}"
    return f"unknown config key {key}{hint}"


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against a field's annotation; ints widen to floats, numeric strings parse."""
    if isinstance(value, _Text):
        # `train.mixed_precision=no` means the string "no", not YAML 1.1's boolean false.
        value = str(value) if _wants_text(hint) else _parse_scalar(value)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if origin is Literal:
        if value not in args:
            hint_text = ' (YAML reads unquoted no/off as false: write "no")' if isinstance(value, bool) else ""
            raise UserError(f"config key {key}: must be one of {', '.join(map(str, args))}, got {value!r}{hint_text}")
        return value
    if origin is tuple and args[-1] is Ellipsis:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key {key}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise UserError(f"config key {key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"config key {key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key {key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        return _to_float(value, key)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UserError(f"config key {key}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config annotation {hint!r} for {key}")


def _to_float(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise UserError(f"config key {key}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        # YAML 1.1 reads "2e-4" as a string; accept it as the number it obviously is.
        try:
            return float(value)
        except ValueError:
            pass
    raise UserError(f"config key {key}: expected a number, got {value!r}")
