"""Secrets are masked: values of secret-named variables, and token shapes wherever they appear."""

from __future__ import annotations

import pytest

from trainboard.backend.redact import MASK, Redactor

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


# --------------------------------------------------------------------------- encoded forms

SECRET = 'wJalr/K7MDENG+bPx "q" \\ &x=1'  # every encoding changes it


def _shown(secret: str) -> dict[str, str]:
    import base64
    import json
    from urllib.parse import quote, quote_plus

    shapes = {"raw": secret, "quote": quote(secret, safe=""), "quote/": quote(secret),
              "quote_plus": quote_plus(secret), "json": json.dumps({"k": secret}),
              "json-ascii-off": json.dumps({"k": secret + "é"}, ensure_ascii=False)}
    for k in range(3):
        blob = b"\x01" * k + secret.encode() + b"tail bytes"
        shapes[f"b64-{k}"] = base64.b64encode(blob).decode()
        shapes[f"b64url-{k}"] = base64.urlsafe_b64encode(blob).decode()
    return shapes


@pytest.mark.parametrize("shape", list(_shown(SECRET)))
def test_encoded_forms_of_a_known_secret_are_masked(shape: str) -> None:
    from trainboard.backend.redact import encoded_forms

    text = f"before {_shown(SECRET)[shape]} after"
    masked = Redactor([SECRET])(text)
    assert MASK in masked
    assert not [f for f in encoded_forms(SECRET) if f in masked]
    assert masked.startswith("before ") and masked.endswith(" after")


def test_a_multi_line_secret_is_masked_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEF\nAASCBKcwggSjAgEAAoIBAQC7\n-----END KEY-----"
    lines = ["loading", *key.splitlines(), "done"]
    assert Redactor([key]).lines(lines) == ["loading", MASK, MASK, MASK, MASK, "done"]


def test_lines_without_a_secret_are_returned_as_they_are() -> None:
    lines = ["epoch 1 f1=0.7", "epoch 2 f1=0.8"]
    assert Redactor([SECRET, "hunter2-xyz"]).lines(lines) is lines


# --------------------------------------------------------------------------- the config, written down

RAW = {
    "name": "r",
    "job": {"command": "python train.py", "env": {"API_TOKEN": "tok-abcdef123456", "EPOCHS": 3, "FLAG": True}},
    "params": {"tokenizer": "bert-base-uncased", "max_tokens": 512, "hf_token": "hf_abcdefgh",
               "db": {"credentials": {"user": "u", "pass": "pw-123456"}}, "apiKey": "k-987654321"},
}


def test_mask_config_masks_job_env_and_secret_named_keys_only() -> None:
    from trainboard.backend.redact import mask_config

    masked = mask_config(RAW)
    assert masked["job"]["env"] == {"API_TOKEN": MASK, "EPOCHS": MASK, "FLAG": True}
    assert masked["params"] == {"tokenizer": "bert-base-uncased", "max_tokens": 512, "hf_token": MASK,
                                "db": {"credentials": {"user": MASK, "pass": MASK}}, "apiKey": MASK}
    assert RAW["job"]["env"]["API_TOKEN"] == "tok-abcdef123456"  # a copy


def test_unmask_config_fills_what_its_sources_know() -> None:
    from trainboard.backend.redact import mask_config, unmask_config

    masked = mask_config(RAW)
    file_now = {"job": {"env": {"API_TOKEN": "tok-abcdef123456"}}, "params": {"hf_token": "hf_abcdefgh"}}
    back = unmask_config(masked, {"job": {"env": {"EPOCHS": "3"}}}, file_now)
    assert back["job"]["env"] == {"API_TOKEN": "tok-abcdef123456", "EPOCHS": "3", "FLAG": True}
    assert back["params"]["hf_token"] == "hf_abcdefgh" and back["params"]["apiKey"] == MASK  # nobody knew it


def test_overrides_of_secrets_are_masked() -> None:
    from trainboard.backend.redact import mask_overrides

    assert mask_overrides(["params.lr=0.1", "job.env.X=abc", "params.hf_token=t", "params.tokenizer=b"]) == [
        "params.lr=0.1", f"job.env.X={MASK}", f"params.hf_token={MASK}", "params.tokenizer=b"]


def test_the_run_redactor_knows_the_configs_secrets() -> None:
    redact = Redactor.for_config(RAW, {})
    text = redact("tok-abcdef123456 pw-123456 k-987654321 hf_abcdefgh bert-base-uncased")
    assert text == f"{MASK} {MASK} {MASK} {MASK} bert-base-uncased"


def test_a_config_file_copy_keeps_no_secret() -> None:
    import yaml

    from trainboard.backend.redact import masked_config_file

    text = yaml.safe_dump(RAW) + "# comment\n"
    copy = masked_config_file(text)
    assert "tok-abcdef123456" not in copy and "hf_abcdefgh" not in copy and "pw-123456" not in copy
    data = yaml.safe_load(copy)
    assert data["job"]["env"]["API_TOKEN"] == MASK and data["job"]["env"]["EPOCHS"] == 3
    assert masked_config_file("name: plain  # kept as written\n") == "name: plain  # kept as written\n"


def test_a_record_is_written_masked(tmp_path) -> None:
    import json

    from trainboard.backend.store import RunStore

    store = RunStore(tmp_path)
    redact = Redactor.for_config(RAW, {})
    record = store.create("r1", redact=redact.data, config=RAW, overrides=["job.env.API_TOKEN=tok-abcdef123456"])
    record.update(errors=[{"message": f"failed with {AWS_ID} and tok-abcdef123456"}])
    text = (tmp_path / "runs" / "r1" / "record.json").read_text()
    for secret in ("tok-abcdef123456", "hf_abcdefgh", "pw-123456", AWS_ID):
        assert secret not in text
    assert json.loads(text)["errors"][0]["message"] == f"failed with {MASK} and {MASK}"
