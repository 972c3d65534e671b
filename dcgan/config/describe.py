"""The config reference, read from the code: each key's type, default, resume policy and docstring.

Python keeps no docstrings of dataclass fields at run time, so they are read from dcgan/config/schema.py's
source with `ast` (the string under each field). `dcgan config --describe` prints the reference and
`dcgan train --help` ends with it; docs/config.md is generated from it, and a test keeps that current.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from dcgan.config import schema as config_module
from dcgan.config.load import yaml_scalar
from dcgan.config.resume import may_change_key
from dcgan.config.schema import Config


@dataclass
class KeyDoc:
    key: str
    type: str
    default: str
    may_change: bool
    doc: str


@dataclass
class SectionDoc:
    name: str  # "" for the top-level keys
    doc: str
    keys: list[KeyDoc]


def _field_docs() -> dict[str, dict[str, str]]:
    """{class name: {field name: its docstring as one line}} for every class in dcgan/config/schema.py."""
    tree = ast.parse(inspect.getsource(config_module))
    docs: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields = docs.setdefault(node.name, {})
        for statement, following in zip(node.body, [*node.body[1:], None], strict=True):
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                text = following.value.value if _is_docstring(following) else ""
                fields[statement.target.id] = " ".join(text.split())
    return docs


def _is_docstring(node: ast.stmt | None) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def type_text(hint: Any) -> str:
    """A field's annotation as a user reads it: `no | fp16 | bf16`, `int or null`, `list of str`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return " | ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_text(a) for a in args)
    if origin is tuple:
        if args[-1] is Ellipsis:
            return f"list of {type_text(args[0])}"
        return f"[{', '.join(type_text(a) for a in args)}]"
    return hint.__name__


def reference() -> list[SectionDoc]:
    """Every key of the config tree, section by section, the top-level keys first."""
    docs = _field_docs()
    top = SectionDoc("", " ".join((Config.__doc__ or "").split()), [])
    sections = [top]
    for f in dataclasses.fields(Config):
        hint = typing.get_type_hints(Config)[f.name]
        if dataclasses.is_dataclass(hint):
            section = SectionDoc(f.name, " ".join((hint.__doc__ or "").split()), [])
            section.keys = _keys(hint, getattr(Config(), f.name), f"{f.name}.", docs)
            sections.append(section)
        else:
            top.keys += [_key(Config, f.name, Config(), "", docs)]
    return sections


def _keys(cls: type, instance: Any, prefix: str, docs: dict[str, dict[str, str]]) -> list[KeyDoc]:
    return [_key(cls, f.name, instance, prefix, docs) for f in dataclasses.fields(cls)]


def _key(cls: type, name: str, instance: Any, prefix: str, docs: dict[str, dict[str, str]]) -> KeyDoc:
    key = prefix + name
    default = getattr(instance, name)
    default = list(default) if isinstance(default, tuple) else default
    hint = typing.get_type_hints(cls)[name]
    return KeyDoc(key, type_text(hint), yaml_scalar(default), may_change_key(key), docs[cls.__name__][name])


def as_text() -> str:
    """The reference for a terminal: `key (type) = default` then the doc, indented."""
    lines = ["Config keys: set them in a YAML file (--config) or as KEY=VALUE overrides.",
             "[run] marks the keys that define a run: a resume that changes one is refused."]  # fmt: skip
    for section in reference():
        lines += ["", f"{section.name or 'top level'}: {section.doc}"]
        for k in section.keys:
            marker = "" if k.may_change else " [run]"
            lines += [f"  {k.key} ({k.type}) = {k.default}{marker}", f"      {k.doc}"]
    return "\n".join(lines) + "\n"


def as_markdown() -> str:
    """docs/config.md."""
    out = [
        "# Configuration reference",
        "",
        "Generated from `dcgan/config/schema.py` by `dcgan config --describe --markdown` (a test fails when this file",
        "is stale). Set keys in a YAML file (`--config FILE`) or as dotted `KEY=VALUE` overrides; unknown keys,",
        "wrong types and impossible values stop the run before any work, in one line naming the key.",
        "",
        "**On resume**: *defines the run* keys cannot change when a run resumes (the resume is refused, one",
        "line per changed key); the others may, and each change is recorded in `run_history.jsonl`.",
    ]
    for section in reference():
        title = f"`{section.name}`" if section.name else "Top level"
        out += ["", f"## {title}", "", section.doc, "", "| key | type | default | on resume | meaning |"]
        out += ["| --- | --- | --- | --- | --- |"]
        for k in section.keys:
            policy = "may change" if k.may_change else "defines the run"
            kind, doc = (text.replace("|", "\\|") for text in (k.type, k.doc))
            out.append(f"| `{k.key}` | {kind} | `{k.default}` | {policy} | {doc} |")
    return "\n".join(out) + "\n"
