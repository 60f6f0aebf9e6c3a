"""Rust source text without its comments (and literals): what the build service and the
OpenAPI reader scan so that a pattern inside a comment or a string does not count."""

from __future__ import annotations

import re


def blank_rust(source: str, *, literals: bool = True) -> str:
    """Rust source with comments (and, with ``literals``, string and char literals) blanked
    out; newlines and offsets are kept, so positions in the result are positions in the
    source. Literals are always skipped over, so ``"//"`` in a string is not a comment."""
    out = []
    i, n = 0, len(source)

    def blank(text: str) -> str:
        return "".join("\n" if ch == "\n" else " " for ch in text)

    def literal(text: str) -> str:
        return blank(text) if literals else text

    while i < n:
        ch = source[i]
        nxt = source[i + 1] if i + 1 < n else ""
        if ch == "/" and nxt == "/":
            end = source.find("\n", i)
            end = n if end < 0 else end
            out.append(blank(source[i:end]))
            i = end
        elif ch == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if source.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif source.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(source[i:j]))
            i = j
        elif ch == "r" and re.match(r'r#*"', source[i:i + 258]) and \
                (i == 0 or not (source[i - 1].isalnum() or source[i - 1] == "_")):
            hashes = len(re.match(r'r(#*)"', source[i:]).group(1))
            close = '"' + "#" * hashes
            end = source.find(close, i + 2 + hashes)
            end = n if end < 0 else end + len(close)
            out.append(literal(source[i:end]))
            i = end
        elif ch == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            out.append(literal(source[i:j + 1]))
            i = j + 1
        elif ch == "'":
            lit = re.match(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^\\'\n])'",
                           source[i:i + 12])
            if lit:  # a char literal; otherwise a lifetime or label
                out.append(literal(lit.group(0)))
                i += len(lit.group(0))
            else:
                out.append(ch)
                i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)
