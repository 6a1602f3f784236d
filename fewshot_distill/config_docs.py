"""Config docs, generated: configs/base.yaml's comments and docs/method.md's key and method tables.

Each key's help is written once, beside it in fewshot_distill/config.py (`option`); the method table comes
from the method registry. Value lists come from the registries (methods, tasks, losses, teacher contexts,
...), so a comment or a doc cannot list other values than the code accepts.

    python scripts/write_config_docs.py      # rewrite both files; tests/test_config_docs.py fails until then
"""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass
from pathlib import Path

from fewshot_distill.config import Config, option_choices
from fewshot_distill.methods import METHODS

BASE_YAML = Path("configs/base.yaml")
METHOD_DOC = Path("docs/method.md")
KEYS_MARKERS = ("<!-- config-keys:start -->", "<!-- config-keys:end -->")
METHODS_MARKERS = ("<!-- methods:start -->", "<!-- methods:end -->")
COMMENT_WIDTH = 110
REGENERATE = "python scripts/write_config_docs.py"


@dataclass(frozen=True)
class KeyDoc:
    key: str                          # dotted, e.g. "distillation.loss"
    default: str                      # as YAML writes it
    choices: tuple[str, ...] | None   # valid values, from the key's registry; None = any value of its type
    help: str


def yaml_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    return str(value)


def _default(spec: dataclasses.Field):
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default


def config_keys(node: type = Config, prefix: str = "") -> list[KeyDoc]:
    """Every key of the config in declaration order; `method` takes its values from the method registry."""
    keys = []
    for spec in dataclasses.fields(node):
        if dataclasses.is_dataclass(spec.type) or (isinstance(spec.type, str) and spec.type.endswith("Config")):
            keys += config_keys(type(_default(spec)), f"{prefix}{spec.name}.")
            continue
        key = f"{prefix}{spec.name}"
        choices = tuple(METHODS) if key == "method" else option_choices(spec)
        keys.append(KeyDoc(key, yaml_value(_default(spec)), choices, spec.metadata["help"]))
    return keys


def section_help() -> dict[str, str]:
    """Section name -> its dataclass's docstring (the comment above the section in base.yaml)."""
    return {spec.name: " ".join(type(_default(spec)).__doc__.split()) for spec in dataclasses.fields(Config)
            if dataclasses.is_dataclass(_default(spec))}


def describe(key: KeyDoc) -> str:
    text = key.help[0].upper() + key.help[1:]
    return text + (f". One of: {' | '.join(key.choices)}" if key.choices else "") + "."


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, COMMENT_WIDTH - len(indent) - 2, initial_indent=f"{indent}# ",
                         subsequent_indent=f"{indent}# ", break_long_words=False, break_on_hyphens=False)


def base_yaml_with_help(text: str, keys: list[KeyDoc] | None = None) -> str:
    """configs/base.yaml with every comment after its header rewritten from the help: one above each section
    and each key. Values and the header (the launch command) are kept as they are."""
    helps = {k.key: k for k in keys or config_keys()}
    sections = section_help()
    out, section, in_header = [], None, True
    for line in text.splitlines():
        stripped = line.strip()
        if in_header and stripped.startswith("#"):  # the header: the leading comments, up to a blank line
            out.append(line)
            continue
        if in_header and out:
            out.append("")  # the header, then the generated part
        in_header = False
        if stripped.startswith("#"):
            continue  # an old generated comment
        if not stripped:
            if out and out[-1]:
                out.append("")
            continue
        body = line.split("  #", 1)[0].rstrip()
        indent = body[: len(body) - len(body.lstrip())]
        name = body.strip().split(":", 1)[0]
        if not indent:
            section = name
        key = name if not indent else f"{section}.{name}"
        if not indent and body.endswith(":"):
            if name not in sections:
                raise ValueError(f"{BASE_YAML}: section {name!r} is not a config section")
            out += _comment(sections[name], "")
        elif key in helps:
            out += _comment(describe(helps[key]), indent)
        else:
            raise ValueError(f"{BASE_YAML}: {key!r} is not a config key")
        out.append(body)
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def key_table_markdown(keys: list[KeyDoc] | None = None) -> str:
    rows = ["| key | default | values | what it does |", "| --- | --- | --- | --- |"]
    for key in keys or config_keys():
        values = ", ".join(f"`{c}`" for c in key.choices) if key.choices else ""
        rows.append(f"| `{key.key}` | `{_cell(key.default)}` | {values} | {_cell(key.help)} |")
    return "\n".join(rows) + "\n"


def methods_table_markdown() -> str:
    rows = ["| `method:` | file | answer both models read | teacher | top-K logits | CE | what it trains |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for method in METHODS.values():
        module = method.build_loss_step.__module__.replace(".", "/") + ".py"
        rows.append(f"| `{method.name}` | `{module}` | {method.answer_source} | {'yes' if method.with_teacher else 'no'}"
                    f" | {'yes' if method.needs_top_k else 'no'} | {'yes' if method.uses_ce else 'no'} | "
                    f"{_cell(method.summary)} |")
    return "\n".join(rows) + "\n"


def between_markers(text: str, markers: tuple[str, str], body: str, source: Path) -> str:
    start, end = markers
    if start not in text or end not in text:
        raise ValueError(f"{source} lacks the {start} / {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}{end}{tail}"


def regenerated(repo: Path) -> dict[Path, str]:
    """{file: its text with the generated parts rewritten} for configs/base.yaml and docs/method.md."""
    doc = (repo / METHOD_DOC).read_text()
    doc = between_markers(doc, KEYS_MARKERS, key_table_markdown(), METHOD_DOC)
    doc = between_markers(doc, METHODS_MARKERS, methods_table_markdown(), METHOD_DOC)
    return {BASE_YAML: base_yaml_with_help((repo / BASE_YAML).read_text()), METHOD_DOC: doc}
