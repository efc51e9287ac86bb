"""The wordcount example agent, run hardened, against a Python reference."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

ASCII_SPACE = " \t\n\v\f\r"
CASES = [
    "hello wide world",
    "",
    "   ",
    "one\ntwo\n\nthree\n",
    "tabs\tand\vvertical\fform\rreturns",
    'quotes " and \\ backslashes / slash',
    "héllo wörld",
    "emoji 😀 and 𝄞 clef",
    "\u0001control\u001fchars",
    "x" * 5000 + " " + "y" * 5000,
]


def reference(text: str) -> dict[str, int]:
    return {
        "words": len([w for w in re.split(f"[{re.escape(ASCII_SPACE)}]+", text) if w]),
        "lines": text.count("\n"),
        "chars": len(text),
    }


def run_agent(image: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none", "--read-only", "--user", "65534:65534",
         "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--memory", "64m", "--pids-limit", "32", image],
        input=stdin, capture_output=True, timeout=60,
    )


@pytest.mark.parametrize("text", CASES)
@pytest.mark.parametrize("encoding", ["utf8-compact", "ascii-escaped", "pretty"])
def test_counts_match_the_reference(images, text: str, encoding: str) -> None:
    doc = {"text": text}
    if encoding == "utf8-compact":
        stdin = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    elif encoding == "ascii-escaped":
        stdin = json.dumps(doc).encode()  # every non-ASCII character as \\uXXXX, astral ones as surrogate pairs
    else:
        stdin = json.dumps(doc, indent=2, ensure_ascii=False).encode()
    done = run_agent(images["wordcount"], stdin)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == reference(text)


# JSON that json.dumps never writes but a valid document may hold: \/, \b,
# upper-case hex, escaped spaces and newlines, odd whitespace around the colon.
RAW_DOCUMENTS = [
    r'{ "text" : "a\/b\bc" }',
    r'{"text":"\u00E9t\u00e9 \uD83D\uDE00 fin"}',
    '{\r\n\t"text"\t:\r\n\t"x y"\r\n}',
    r'{"text": "\u0020one\u000atwo\u0009three\u000c"}',
    r'{"text":"\\\"\\"}',
]


@pytest.mark.parametrize("raw", RAW_DOCUMENTS)
def test_hand_written_json(images, raw: str) -> None:
    done = run_agent(images["wordcount"], raw.encode())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == reference(json.loads(raw)["text"])


def test_the_output_is_compact_json(images) -> None:
    done = run_agent(images["wordcount"], b'{"text": "hello wide world"}')
    assert done.stdout == b'{"words":3,"lines":0,"chars":16}\n'


def test_input_without_text_fails_with_a_log(images) -> None:
    done = run_agent(images["wordcount"], b'{"other": 1}')
    assert done.returncode == 1 and b"no \"text\" member" in done.stderr
