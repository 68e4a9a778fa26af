"""One typed, validated config for a run: building and checking it.

The config itself (every section and key, its type, default, range and documentation) is declared
in r3v/config_fields.py and re-exported here; this module is the machinery. YAML files and
`key=value` overrides (dotted paths, values parsed as YAML scalars) build a config; unknown keys,
wrongly typed values, values out of their declared range and broken cross-field rules are errors
that name the key (a YAML error names file:line:col); `r3v config explain KEY` prints a key's
documentation. The config is frozen into the run folder with its hash; a run folder refuses a
config with another hash.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from r3v import config_fields
from r3v.config_fields import (  # noqa: F401 (the declared config, imported from here by the rest of r3v)
    NOT_RESULTS,
    QUESTION_FAMILIES,
    RENAMED,
    RESULTS_ONLY_WHEN,
    Config,
    ConfigError,
    DataConfig,
    EmbeddedBenchConfig,
    EmbeddedModelConfig,
    EvalConfig,
    JudgeConfig,
    ModelConfig,
    OrchestrationConfig,
    PrototypeConfig,
    QARConfig,
    RolloutConfig,
    Rule,
    RunConfig,
    SelfQuestioningConfig,
    SourceConfig,
    TrainConfig,
    VLLMConfig,
    WarmupConfig,
    _field_default,
    affects_results,
    former_name,
    leaves,
    parse_levels,
)

log = logging.getLogger(__name__)

# -- ranges and cross-field rules, checked when a config is built -----------------------------------------


def _ranges(cls, prefix: str = "") -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out |= _ranges(tp, f"{prefix}{f.name}.")
        elif "range" in f.metadata:
            out[f"{prefix}{f.name}"] = f.metadata["range"]
    return out


RANGES: dict[str, Rule] = _ranges(Config)
"""Range of every numeric key whose range is narrower than its type's (declared with the key in
r3v/config_fields.py: `bounded`): checked when a config is built (load_config, config_from_dict),
before anything runs; the error names the key."""


def _cross_field(cfg: Config) -> list[str]:
    """Rules over several keys; each message names them."""
    errors = []
    emb, tasks = cfg.model.embedded, cfg.data.embedded
    if tasks.max_objects < tasks.min_objects:
        errors.append(f"data.embedded.max_objects={tasks.max_objects} must be >= data.embedded.min_objects="
                      f"{tasks.min_objects}")
    if emb.image_size % emb.patch_size:
        errors.append(f"model.embedded.patch_size={emb.patch_size} must divide model.embedded.image_size={emb.image_size}")
    for part in ("vision", "text"):
        hidden, heads = getattr(emb, f"{part}_hidden"), getattr(emb, f"{part}_heads")
        if hidden % heads:
            errors.append(f"model.embedded.{part}_heads={heads} must divide model.embedded.{part}_hidden={hidden}")
    if cfg.train.grad_accum % cfg.train.processes:
        errors.append(f"train.grad_accum={cfg.train.grad_accum} must be a multiple of train.processes="
                      f"{cfg.train.processes} (each process takes grad_accum / processes micro-batches a step)")
    if cfg.data.source == "files":
        for split in ("train_split", "test_split"):
            if not getattr(cfg.data, split).path:
                errors.append(f"data.{split}.path is empty (data.source=files needs the train and test splits)")
    return errors


def _run_name_errors(name: str) -> list[str]:
    """run.name is one plain folder name under run.root (an empty one would write the run into
    run.root itself, a path would write it elsewhere)."""
    if not name or name != name.strip() or name in (".", "..") or name.startswith(".") \
            or any(c in name for c in "/\\") or any(ord(c) < 32 for c in name):
        return [f"run.name={name!r} must be a plain folder name (not empty, no / or \\, not . or .., "
                f"not hidden, no surrounding spaces)"]
    return []


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: Config) -> Config:
    """Every range (RANGES) and cross-field rule; ConfigError listing each broken one."""
    errors = []
    for key, (ok, text) in RANGES.items():
        value = _get(cfg, key)
        if not ok(value):  # (NaN and infinities never get here: _coerce refuses them)
            errors.append(f"{key}={value!r} must be {text}")
    errors += _run_name_errors(cfg.run.name) + ([] if errors else _cross_field(cfg))  # cross-field: over valid values
    if errors:
        raise ConfigError("; ".join(errors))
    return cfg


# -- building from dicts ---------------------------------------------------------------


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (arg,) = typing.get_args(tp)
        return [_coerce(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {value!r} does not match {tp}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in {prefix}" if prefix else ""
        raise ConfigError(f"unknown config key{where}: {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["train.lr=1e-4", "run.name=x"]` -> nested dict; values parsed as YAML scalars."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value does not parse as YAML "
                              f"({getattr(e, 'problem', None) or e})") from None
        node = tree
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return tree


def _fix_floats(d: Any, cls: Any) -> Any:
    """YAML reads `1e-3` as a string; turn such strings into numbers where a float is due."""
    if not (dataclasses.is_dataclass(cls) and isinstance(d, dict)):
        return d
    hints = typing.get_type_hints(cls)
    out = {}
    for k, v in d.items():
        tp = hints.get(k)
        if tp is float and isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                pass
        out[k] = _fix_floats(v, tp)
    return out


_WARNED: set[tuple[str, str]] = set()


def read_renamed(data: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """`data` with every key or section that was renamed (`RENAMED`) moved to its new name, with a
    one-line deprecation warning (once per `where` and key); both names at once is a ConfigError."""
    out = dict(data)
    for old, new in RENAMED.items():
        *old_path, old_leaf = old.split(".")
        parent = out
        for part in old_path:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or old_leaf not in parent:
            continue
        if (where, old) not in _WARNED:
            _WARNED.add((where, old))
            log.warning("%s: config key %r is now called %r; read as such (rename it there)", where, old, new)
        node = out
        for part in old_path:  # copy the path down to the old key's parent, then move the key
            node[part] = dict(node[part])
            node = node[part]
        value = node.pop(old_leaf)
        *new_path, new_leaf = new.split(".")
        node = out
        for part in new_path:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        if new_leaf in node:  # both names: fine while they set different keys of a section
            sections = isinstance(value, dict) and isinstance(node[new_leaf], dict)
            both = set(value) & set(node[new_leaf]) if sections else {new_leaf}
            if both:
                what = f" (both set {', '.join(sorted(both))})" if sections else ""
                raise ConfigError(f"{where}: {old!r} and its new name {new!r} are both set{what}; keep {new!r}")
            value = {**value, **node[new_leaf]}
        node[new_leaf] = value
    return out


def config_from_dict(data: dict[str, Any], where: str = "config") -> Config:
    return validate(_build(Config, _fix_floats(read_renamed(data, where), Config)))


class _Loader(yaml.SafeLoader):
    """YAML with duplicate keys refused (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; a syntax error or duplicate key is a ConfigError `file:line:col: message`."""
    p = Path(path)
    try:
        return yaml.load(p.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(p)
        raise ConfigError(f"{where}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- YAML file <- `key=value` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        loaded = read_yaml(p) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping")
        data = read_renamed(loaded, str(p))
    if overrides:
        data = _merge(data, read_renamed(parse_overrides(overrides), "override"))
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None


# -- the documentation of every key (`r3v config explain`) ----------------------------------------------


def _attribute_docs() -> dict[str, dict[str, str]]:
    """{class name: {field: docstring}}: the string literal under each field, as written above."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(config_fields))
    out: dict[str, dict[str, str]] = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        docs = out.setdefault(cls.name, {})
        for a, b in zip(cls.body, cls.body[1:]):
            if (isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr)
                    and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)):
                docs[a.target.id] = inspect.cleandoc(b.value.value)
    return out


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(str(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def key_docs() -> dict[str, dict[str, Any]]:
    """{dotted key: {type, default, doc, section}} of every leaf key, in declaration order; a
    section's own docstring is under its key with `section: True`."""
    docs = _attribute_docs()
    out: dict[str, dict[str, Any]] = {}

    def walk(cls, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp, key = hints[f.name], prefix + f.name
            if dataclasses.is_dataclass(tp):
                out[key] = {"section": True, "doc": inspect_doc(tp)}
                walk(tp, key + ".")
            else:
                out[key] = {"type": _type_name(tp), "default": _field_default(f),
                            "doc": docs.get(cls.__name__, {}).get(f.name, ""), "section": False}

    def inspect_doc(cls) -> str:
        import inspect

        return inspect.cleandoc(cls.__doc__) if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "(") else ""

    walk(Config, "")
    return out


def explain(key: str | None = None) -> str:
    """What `key` (or every key under it, or every key) does, its type and default, as text."""
    import textwrap

    docs = key_docs()
    picked = {k: v for k, v in docs.items() if key is None or k == key or k.startswith(key + ".")}
    if not picked:
        import difflib

        near = difflib.get_close_matches(key, list(docs), n=3, cutoff=0.6)
        raise ConfigError(f"unknown config key {key!r}" + (f" (did you mean {', '.join(near)}?)" if near else ""))
    lines = []
    for k, d in picked.items():
        if d["section"]:
            lines.append(f"[{k}]" + (f"\n{textwrap.indent(d['doc'], '    ')}" if d["doc"] else ""))
            continue
        default = json.dumps(d["default"]) if not isinstance(d["default"], str) else repr(d["default"])
        flags = "" if affects_results(k) else "  (not in the config hash: changes no result)"
        lines.append(f"{k}: {d['type']} = {default}{flags}")
        if d["doc"]:
            lines.append(textwrap.indent(textwrap.fill(" ".join(d["doc"].split()), 96), "    "))
    return "\n".join(lines)
