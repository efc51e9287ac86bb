"""JSON Schema patterns (ECMA-262 regular expressions) on RE2, a linear-time engine.

A backtracking engine (Python's `re`, like ECMA's own) takes time exponential in the text
for patterns such as `^(a+)+$`, and holds the GIL while it does: no thread or budget saves
the event loop from it. RE2 runs every pattern in time linear in the text, and refuses the
features that need backtracking (backreferences, lookahead, lookbehind).

ECMA-262 and RE2 mostly agree (`\\d`, `\\w`, `\\b` are ASCII in both; `^` and `$` are the
ends of the text, not of a line; a pattern is searched for, not anchored). Where they
differ, `to_re2` rewrites the pattern so it means what ECMA says:

- `\\uXXXX` (and a `\\uD83D\\uDE00` surrogate pair, as one code point), `\\cX` become `\\x{...}`;
- `.` excludes every ECMA line terminator (\\n, \\r, U+2028, U+2029), not only \\n;
- `\\s` is ECMA's Unicode white space (and `\\S` its complement, outside a class);
- `[\\b]` is a backspace; `[]` matches nothing and `[^]` any character.

Accepted differences (docs/security.md): inside a class `\\S` is RE2's ASCII one; RE2 also
accepts syntax ECMA refuses (`(?i)`, `\\pL`, `\\z`), reads a few identity escapes its own way
(`\\a` is a bell), and refuses a repetition above 1000 (`a{2000}`) or a pattern whose
compiled program is over `_MAX_MEM`: those are refused at registration with RE2's reason.
"""

from __future__ import annotations

import functools
from typing import Any

import re2

_MAX_MEM = 1 << 20  # per pattern: program plus lazy-DFA cache; past it RE2 stays linear, only slower
_CACHE = 256  # compiled patterns kept; a schema's own patterns are compiled once per process

_SPACE = ("\\t\\n\\x0B\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}"
          "\\x{3000}\\x{FEFF}")
_NOT_LINE_TERMINATOR = "[^\\n\\r\\x{2028}\\x{2029}]"
_ANY = "[\\x{0}-\\x{10FFFF}]"
_NOTHING = "[^\\x{0}-\\x{10FFFF}]"


def _hex4(text: str, at: int) -> int | None:
    digits = text[at:at + 4]
    if len(digits) == 4 and all(c in "0123456789abcdefABCDEF" for c in digits):
        return int(digits, 16)
    return None


def to_re2(pattern: str) -> str:
    """`pattern` (ECMA-262 syntax) rewritten so RE2 gives it ECMA's meaning."""
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            code = _hex4(pattern, i + 2) if e == "u" else None
            if code is not None:
                i += 6
                low = _hex4(pattern, i + 2) if pattern[i:i + 2] == "\\u" else None
                if 0xD800 <= code < 0xDC00 and low is not None and 0xDC00 <= low < 0xE000:
                    code, i = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00), i + 6
                out.append(f"\\x{{{code:X}}}")
                continue
            if e == "c" and i + 2 < n and pattern[i + 2].isascii() and pattern[i + 2].isalpha():
                out.append(f"\\x{{{ord(pattern[i + 2]) % 32:X}}}")
                i += 3
                continue
            if e == "s":
                out.append(_SPACE if in_class else f"[{_SPACE}]")
            elif e == "S" and not in_class:
                out.append(f"[^{_SPACE}]")
            elif e == "b" and in_class:
                out.append("\\x08")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            if pattern.startswith("[]", i) or pattern.startswith("[^]", i):  # ECMA: empty class, any char
                out.append(_NOTHING if pattern[i + 1] == "]" else _ANY)
                i += 2 if pattern[i + 1] == "]" else 3
                continue
            in_class = True
            if pattern.startswith("[^", i):
                out.append("[^")
                i += 2
                continue
        elif c == ".":
            out.append(_NOT_LINE_TERMINATOR)
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is an answer to the caller, not a log line
    options.max_mem = _MAX_MEM
    return options


@functools.lru_cache(maxsize=_CACHE)
def compiled(pattern: str) -> Any:
    """The RE2 program of an ECMA-262 pattern; raises re2.error (or UnicodeEncodeError for a
    lone surrogate in the pattern) when RE2 cannot run it."""
    return re2.compile(to_re2(pattern), _options())


def problem(pattern: str) -> str | None:
    """Why RE2 cannot run `pattern`, or None when it can."""
    try:
        compiled(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "refused"
        return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    except UnicodeEncodeError:
        return "a lone surrogate (\\ud800-\\udfff) written as a character; write it as \\uXXXX"
    return None


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` occurs anywhere in `text` (ECMA: patterns are not anchored).
    A lone surrogate in `text` (JSON allows \\ud800) is matched as bytes no character matches."""
    return compiled(pattern).search(text.encode("utf-8", "surrogatepass")) is not None
