"""A small interpreter of the Go-template subset the chart's templates use.

Supported: text with actions ``{{ ... }}``, whitespace trimming (``{{-`` and ``-}}``),
comments ``{{/* ... */}}``, ``if`` / ``else`` / ``end``, pipelines ``a | f b``, the fields
``.Values.x.y``, ``.Release.Name``, ``.Release.Namespace``, ``.Chart.Name``, ``.Chart.Version``
and ``.Chart.AppVersion``, string/number/boolean literals, and the functions in ``FUNCTIONS``
(Helm's and sprig's meaning). Anything else raises ``TemplateError``, so a template that
outgrows the subset fails loudly instead of rendering differently from Helm.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import yaml

ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.S)
TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<pipe>\|)|(?P<word>[^\s|"]+))')
FIELD = re.compile(r"^(\.[A-Za-z_][A-Za-z0-9_]*)+$")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
ROOTS = {"Values", "Release", "Chart"}
KEYWORDS = {"if", "else", "end"}


class TemplateError(Exception):
    """A template outside the supported subset, or a failure while rendering it."""


# -- values as Go prints them -----------------------------------------------------------------

def go_string(value: Any) -> str:
    """``fmt.Sprint(value)`` as a template prints it (Helm prints a missing value as "")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _go_number(value)
    if isinstance(value, str):
        return value
    raise TemplateError(f"cannot print a {type(value).__name__} ({value!r}); use toYaml")


def _go_number(value: int | float) -> str:
    """Go's %v of a float64 (Helm reads numbers in values files as float64)."""
    number = Decimal(repr(float(value))).normalize()
    if number == 0:
        return "0"
    sign, digits, exponent = number.as_tuple()
    point = len(digits) + exponent  # digits before the decimal point
    if point - 1 < -4 or point - 1 >= 6:  # strconv.FormatFloat(v, "g", -1, 64)
        mantissa = "".join(map(str, digits))
        mantissa = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
        return f"{'-' if sign else ''}{mantissa}e{point - 1:+03d}"
    return format(number, "f")


def empty(value: Any) -> bool:
    """Go templates' (and sprig's ``empty``) idea of false: nil, false, 0, "", [] and {}."""
    if value is None or value is False:
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 0
    if isinstance(value, (str, list, dict)):
        return len(value) == 0
    return False


class _GoDumper(yaml.SafeDumper):
    """PyYAML made to write what go-yaml v2 (Helm's toYaml) writes for JSON-like data."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # go-yaml double-quotes a string that would read back as another type ("true", "1", "")
    resolved = dumper.resolve(yaml.ScalarNode, value, (True, False))
    style = '"' if resolved != "tag:yaml.org,2002:str" else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_GoDumper.add_representer(str, _represent_str)


def to_yaml(value: Any) -> str:
    """Helm's ``toYaml``: keys sorted, block style, no trailing newline."""
    if value is None:
        return "null"
    text = yaml.dump(value, Dumper=_GoDumper, default_flow_style=False, sort_keys=True,
                     allow_unicode=True, width=2**31 - 1)
    if text.endswith("\n...\n"):  # a bare scalar
        text = text[: -len("...\n")]
    return text.removesuffix("\n")


def _indent(spaces: int, text: Any) -> str:
    pad = " " * int(spaces)
    return pad + go_string(text).replace("\n", "\n" + pad)


def _quote(*values: Any) -> str:
    return " ".join(json.dumps(go_string(v), ensure_ascii=False) for v in values if v is not None)


def _default(fallback: Any, *given: Any) -> Any:
    return fallback if not given or empty(given[0]) else given[0]


def _b64enc(value: Any) -> str:
    return base64.b64encode(go_string(value).encode()).decode()


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "toYaml": to_yaml,
    "nindent": lambda spaces, text: "\n" + _indent(spaces, text),
    "indent": _indent,
    "quote": _quote,
    "default": _default,
    "b64enc": _b64enc,
    "not": empty,
}


# -- parsing -----------------------------------------------------------------------------------

class Template:
    """A parsed template; ``render(context)`` gives its text."""

    def __init__(self, source: str, name: str = "template"):
        self.name = name
        self.body = self._parse(source)

    def _parse(self, source: str) -> list:
        parts: list = []  # text strings and (line, action) tuples, trimming applied
        position = 0
        for match in ACTION.finditer(source):
            text = source[position:match.start()]
            if match.group(1):
                text = text.rstrip(" \t\r\n")
            if parts and isinstance(parts[-1], tuple) and parts[-1][2]:
                text = text.lstrip(" \t\r\n")
            parts.append(text)
            line = source.count("\n", 0, match.start()) + 1
            if match.group(1) and not match.group(2)[:1].isspace():
                raise TemplateError(f"{self.name}:{line}: '{{{{-' needs a space after it")
            if match.group(3) and not match.group(2)[-1:].isspace():
                raise TemplateError(f"{self.name}:{line}: '-}}}}' needs a space before it")
            parts.append((line, match.group(2).strip(), bool(match.group(3))))
            position = match.end()
        tail = source[position:]
        if parts and isinstance(parts[-1], tuple) and parts[-1][2]:
            tail = tail.lstrip(" \t\r\n")
        parts.append(tail)
        return self._block(parts, 0, top=True)[0]

    def _block(self, parts: list, index: int, top: bool = False) -> tuple[list, int]:
        """Nodes up to a closing ``else``/``end`` (not consumed) or the end of ``parts``."""
        nodes: list = []
        while index < len(parts):
            part = parts[index]
            if isinstance(part, str):
                if part:
                    nodes.append(part)
                index += 1
                continue
            line, action, _ = part
            where = f"{self.name}:{line}"
            if action.startswith("/*"):
                if not action.endswith("*/"):
                    raise TemplateError(f"{where}: unterminated comment")
                index += 1
                continue
            words = action.split(None, 1)
            keyword = words[0] if words else ""
            if keyword in ("else", "end"):
                if top:
                    raise TemplateError(f"{where}: {keyword} without if")
                if keyword == "else" and len(words) > 1:
                    raise TemplateError(f"{where}: 'else {words[1]}' is not supported")
                if keyword == "end" and len(words) > 1:
                    raise TemplateError(f"{where}: text after end")
                return nodes, index
            if keyword == "if":
                if len(words) < 2:
                    raise TemplateError(f"{where}: if without a condition")
                condition = self._pipeline(words[1], where)
                then, index = self._block(parts, index + 1)
                otherwise: list = []
                if index < len(parts) and parts[index][1] == "else":
                    otherwise, index = self._block(parts, index + 1)
                if index >= len(parts) or parts[index][1] != "end":
                    raise TemplateError(f"{where}: if without end")
                nodes.append(("if", condition, then, otherwise))
                index += 1
                continue
            nodes.append(("print", self._pipeline(action, where)))
            index += 1
        if not top:
            raise TemplateError(f"{self.name}: missing end")
        return nodes, index

    def _pipeline(self, text: str, where: str) -> list:
        commands: list[list] = [[]]
        position = 0
        text = text.strip()
        while position < len(text):
            match = TOKEN.match(text, position)
            if not match or match.end() == position:
                raise TemplateError(f"{where}: cannot read {text[position:]!r}")
            position = match.end()
            if match.group("pipe"):
                commands.append([])
            elif match.group("str") is not None:
                commands[-1].append(("literal", json.loads(match.group("str"))))
            else:
                commands[-1].append(self._word(match.group("word"), where))
        if any(not command for command in commands):
            raise TemplateError(f"{where}: empty command in {text!r}")
        for number, command in enumerate(commands):
            head, args = command[0], command[1:]
            if head[0] != "function" and (args or number > 0):
                raise TemplateError(f"{where}: {text!r}: only a function takes arguments")
        return commands

    def _word(self, word: str, where: str) -> tuple:
        if FIELD.match(word):
            path = word[1:].split(".")
            if path[0] not in ROOTS:
                raise TemplateError(f"{where}: unsupported field {word} (only .Values, "
                                    ".Release and .Chart)")
            return ("field", path)
        if word in ("true", "false"):
            return ("literal", word == "true")
        if NUMBER.match(word):
            return ("literal", float(word) if "." in word else int(word))
        if word in FUNCTIONS:
            return ("function", word)
        if word in KEYWORDS:
            raise TemplateError(f"{where}: {word} is misplaced")
        raise TemplateError(f"{where}: {word!r} is outside the supported template subset "
                            f"(functions: {', '.join(sorted(FUNCTIONS))})")

    # -- rendering -----------------------------------------------------------------------

    def render(self, context: dict[str, Any]) -> str:
        out: list[str] = []
        self._run(self.body, context, out)
        return "".join(out)

    def _run(self, nodes: list, context: dict[str, Any], out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif node[0] == "print":
                out.append(go_string(self._evaluate(node[1], context)))
            else:
                _, condition, then, otherwise = node
                chosen = otherwise if empty(self._evaluate(condition, context)) else then
                self._run(chosen, context, out)

    def _evaluate(self, commands: list, context: dict[str, Any]) -> Any:
        result: Any = None
        for number, command in enumerate(commands):
            head, args = command[0], command[1:]
            if head[0] != "function":
                result = self._operand(head, context)
                continue
            values = [self._operand(arg, context) for arg in args]
            if number > 0:
                values.append(result)
            try:
                result = FUNCTIONS[head[1]](*values)
            except TypeError as exc:
                raise TemplateError(f"{self.name}: {head[1]}: {exc}") from None
        return result

    def _operand(self, operand: tuple, context: dict[str, Any]) -> Any:
        kind, value = operand
        if kind == "literal":
            return value
        if kind == "function":
            return FUNCTIONS[value]()
        current: Any = context
        for depth, key in enumerate(value):
            if current is None:
                raise TemplateError(f"{self.name}: nil pointer evaluating "
                                    f".{'.'.join(value[:depth])}.{key}")
            if not isinstance(current, dict):
                raise TemplateError(f"{self.name}: .{'.'.join(value[:depth])} is not a map")
            current = current.get(key)
        return current
