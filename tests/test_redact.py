"""Secrets are masked: values of secret-named variables, and token shapes wherever they appear."""

from __future__ import annotations

import pytest

from backend.redact import MASK, Redactor

AWS_ID = "AKIA" + "ABCDEFGHIJKLMNOP"
GH_CLASSIC = "ghp_" + "a1B2" * 9
GH_FINE = "github_pat_" + "x_Y1" * 11


@pytest.mark.parametrize("secret", [AWS_ID, "ASIA" + "Q" * 16, GH_CLASSIC, "ghs_" + "z" * 40, GH_FINE])
def test_token_shapes_are_masked_anywhere(secret: str) -> None:
    text = f"step 3 train_loss=0.1 uploading with {secret}, done"
    assert Redactor()(text) == f"step 3 train_loss=0.1 uploading with {MASK}, done"


def test_secret_named_variables_are_masked_and_others_kept() -> None:
    redact = Redactor.from_env({"GITHUB_TOKEN": "tok-123456", "AWS_SECRET_ACCESS_KEY": "wJalr/K7MDENG+bPx",
                                "DB_PASSWORD": "hunter22", "EPOCHS": "123456", "SHORT_TOKEN": "abc"})
    line = "tok-123456 wJalr/K7MDENG+bPx hunter22 epochs=123456 abc"
    assert redact(line) == f"{MASK} {MASK} {MASK} epochs=123456 abc"


def test_near_misses_and_plain_lines_are_untouched() -> None:
    redact = Redactor()
    lines = ["Accuracy 0.91 AKIA short", "gh_pages ghp_tooshort", "github_pat_", "nothing to see"]
    assert redact.lines(lines) is lines  # one scan, no copy when nothing matches


def test_a_batch_keeps_its_lines_when_a_secret_is_masked() -> None:
    lines = ["first", f"key={AWS_ID}", "third"]
    assert Redactor().lines(lines) == ["first", f"key={MASK}", "third"]
