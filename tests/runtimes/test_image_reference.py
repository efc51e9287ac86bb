"""Unit tests of which image references are ever sent to the engine (pure logic)."""

from __future__ import annotations

import pytest

from runtimes.engine import is_image_reference


@pytest.mark.parametrize("reference", ["executor/busybox:latest", "busybox", "localhost:5000/a/b:1.0",
                                       "registry.example/x__y/z-1:v1.2_3", "sha256:" + "a" * 64, "a" * 12,
                                       "x@sha256:" + "0" * 64])
def test_references_of_the_distribution_grammar_and_image_ids_are_sent(reference: str) -> None:
    assert is_image_reference(reference)


@pytest.mark.parametrize("reference", ["", "/", "//", "a/", "a/../b", "x/../../containers/json", "..", "-1", "UPPER",
                                       "a b", "x:y:z", "?x", "%", "#", "a\x00", "é", "a" * 600])
def test_anything_else_is_never_sent(reference: str) -> None:
    # docker-py puts the reference into the URL path unquoted: "/" lists images, "../" escapes.
    assert not is_image_reference(reference)
