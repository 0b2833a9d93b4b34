"""Declaring a sweep: Hydra's override grammar expanded into members, and the
config validated for every member (issue 13, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY_CONFIG
from trainboard.backend.config import load_config
from trainboard.backend.config_errors import ConfigError
from trainboard.backend.sweep_spec import Member, expand, render_value, validate_members


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "tb.yaml"
    path.write_text(TINY_CONFIG)
    return path


def test_comma_list_gives_one_member_per_value() -> None:
    members = expand(["params.learning_rate=1e-4,5e-5,2e-5"])
    assert [m.values for m in members] == [(("params.learning_rate", v),) for v in (1e-4, 5e-5, 2e-5)]
    assert [m.index for m in members] == [0, 1, 2]


def test_range_and_choice() -> None:
    assert [m.values[0][1] for m in expand({"params.epochs": "range(1,4)"})] == [1, 2, 3]
    assert [m.values[0][1] for m in expand({"params.opt": "choice(adam,sgd,true)"})] == ["adam", "sgd", True]


def test_single_value_is_one_member() -> None:
    assert expand(["params.epochs=3"]) == [Member(0, (("params.epochs", 3),))]


def test_grid_is_the_product_in_declaration_order() -> None:
    members = expand(["params.lr=1,2", "params.epochs=a,b,c"])
    assert [m.values for m in members] == [
        (("params.lr", lr), ("params.epochs", ep)) for lr in (1, 2) for ep in ("a", "b", "c")
    ]
    assert [m.overrides() for m in members[:2]] == [["params.lr=1", "params.epochs=a"],
                                                    ["params.lr=1", "params.epochs=b"]]


def test_max_runs_keeps_the_first_members_of_a_grid() -> None:
    members = expand({"params.lr": "1,2,3", "params.epochs": "range(1,3)"}, max_runs=4)
    assert [dict(m.values) for m in members] == [
        {"params.lr": 1, "params.epochs": 1}, {"params.lr": 1, "params.epochs": 2},
        {"params.lr": 2, "params.epochs": 1}, {"params.lr": 2, "params.epochs": 2},
    ]


def test_random_interval_is_seeded() -> None:
    sweeps = {"params.lr": "interval(0.001,0.1)", "params.epochs": "int(interval(1,5))", "params.opt": "a,b"}
    first = expand(sweeps, mode="random", max_runs=6, seed=7)
    assert first == expand(sweeps, mode="random", max_runs=6, seed=7)
    assert first != expand(sweeps, mode="random", max_runs=6, seed=8)
    assert len(first) == 6 and [m.index for m in first] == list(range(6))
    for member in first:
        values = dict(member.values)
        assert 0.001 <= values["params.lr"] <= 0.1 and isinstance(values["params.lr"], float)
        assert values["params.epochs"] in range(1, 6) and isinstance(values["params.epochs"], int)
        assert values["params.opt"] in ("a", "b")


@pytest.mark.parametrize("value", [1e-4, 5e-05, 0.1, 3, -2, "adam", "true", "1e-4", "a b", True, False,
                                   1e-300, 123456789012])
def test_values_round_trip_through_set(config_path: Path, value: object) -> None:
    member = Member(0, (("params.x", value),))
    loaded = load_config(config_path, member.overrides())
    assert loaded.config.params["x"] == value
    assert type(loaded.config.params["x"]) is type(value)


def test_hydra_values_round_trip(config_path: Path) -> None:
    for member in expand(["params.lr=1e-4,5e-5", "params.flag=true,false", "params.name=adam"]):
        loaded = load_config(config_path, member.overrides())
        assert {f"params.{k}": v for k, v in loaded.config.params.items() if k in ("lr", "flag", "name")} \
            == dict(member.values)


def test_render_value_has_no_document_end() -> None:
    assert render_value("adam") == "adam"
    assert render_value("true") == "'true'"


def test_valid_members_pass(config_path: Path) -> None:
    validate_members(config_path, ["params.sleep=0.5"], expand(["params.epochs=1,2", "mlflow.poll_interval=1,2"]))


def test_member_that_does_not_validate_is_named(config_path: Path) -> None:
    members = expand(["params.epochs=1,2", "mlflow.poll_interval=-1,1"])
    with pytest.raises(ConfigError) as caught:
        validate_members(config_path, [], members)
    text = str(caught.value)
    assert "sweep member 0 (params.epochs=1 mlflow.poll_interval=-1)" in text
    assert "poll_interval" in caught.value.setting
    assert "fix:" in text


def test_only_the_bad_member_is_named(config_path: Path) -> None:
    members = expand(["mlflow.poll_interval=1,-1"])
    with pytest.raises(ConfigError, match=r"sweep member 1 \(mlflow.poll_interval=-1\)"):
        validate_members(config_path, [], members)


@pytest.mark.parametrize(("sweeps", "kwargs", "message"), [
    (["params.lr=choice(1,"], {}, "not a valid sweep value"),
    (["params.lr=1,,2"], {}, "not a valid sweep value"),
    ([], {}, "declares no settings"),
    ({}, {}, "declares no settings"),
    (["params.lr="], {}, "lists no values"),
    (["params.epochs=range(4,1)"], {}, "lists no values"),
    (["lr=1,2"], {}, "not a dotted setting path"),
    (["params..lr=1,2"], {}, "not a dotted setting path"),
    (["params.lr"], {}, "not of the form"),
    (["params.lr=interval(0,1)"], {}, "only be sampled"),
    (["params.lr=1,2"], {"mode": "random"}, "needs max_runs"),
    (["params.lr=1,2"], {"mode": "bayes"}, "unknown sweep mode"),
    (["params.lr=1,2"], {"max_runs": 0}, "at least 1"),
    (["params.lr=1,2", "params.lr=3"], {}, "swept twice"),
])
def test_errors_say_what_and_how_to_fix(sweeps: list[str], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        expand(sweeps, **kwargs)  # type: ignore[arg-type]
    assert message in caught.value.message
    assert caught.value.file == "--sweep"
    assert caught.value.fix
    assert "fix:" in str(caught.value)


# --------------------------------------------------------------------------- the config's sweep section


def test_sweep_section_defaults_to_a_single_run(config_path: Path) -> None:
    sweep = load_config(config_path).config.sweep
    assert sweep.params == {} and sweep.mode == "grid" and sweep.max_runs is None
    assert sweep.max_parallel == 2 and sweep.seed == 0 and sweep.objective == ""


def test_sweep_settings_take_set(config_path: Path) -> None:
    config = load_config(config_path, ["sweep.max_parallel=4", "sweep.mode=random", "sweep.max_runs=3",
                                       "sweep.seed=5", "sweep.params={params.lr: 'interval(0.1,0.2)'}"]).config
    assert config.sweep.max_parallel == 4
    members = expand(config.sweep.params, config.sweep.mode, config.sweep.max_runs, config.sweep.seed)
    assert len(members) == 3 and all(0.1 <= dict(m.values)["params.lr"] <= 0.2 for m in members)


def test_sweep_section_in_the_file(config_path: Path) -> None:
    config_path.write_text(TINY_CONFIG + "sweep:\n  params:\n    params.epochs: range(1,3)\n"
                           "    params.base_f1: 0.5,0.7\n  max_parallel: 3\n")
    config = load_config(config_path).config
    members = expand(config.sweep.params, config.sweep.mode, config.sweep.max_runs)
    assert [m.overrides() for m in members] == [
        ["params.epochs=1", "params.base_f1=0.5"], ["params.epochs=1", "params.base_f1=0.7"],
        ["params.epochs=2", "params.base_f1=0.5"], ["params.epochs=2", "params.base_f1=0.7"],
    ]
    validate_members(config_path, [], members)


@pytest.mark.parametrize("item", ["sweep.max_parallel=0", "sweep.max_runs=0", "sweep.mode=bayes"])
def test_bad_sweep_settings_are_refused(config_path: Path, item: str) -> None:
    with pytest.raises(ConfigError, match="sweep"):
        load_config(config_path, [item])
