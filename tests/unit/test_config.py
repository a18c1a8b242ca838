"""Settings: YAML file, environment overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from interest_graph.config import load_settings
from interest_graph.errors import ConfigError


def test_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTEREST_GRAPH_CONFIG", raising=False)
    settings = load_settings()
    assert settings.evaluation.k == 20
    assert settings.evaluation.ease_lambda == 500.0
    assert settings.paths.data_dir == Path(".work/data")


def test_environment_beats_yaml_beats_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("evaluation:\n  k: 10\n  ease_lambda: 50\nsynth:\n  users: 7\n")
    monkeypatch.setenv("INTEREST_GRAPH__EVALUATION__EASE_LAMBDA", "200")
    settings = load_settings(config)
    assert settings.evaluation.k == 10  # from the file
    assert settings.evaluation.ease_lambda == 200.0  # environment wins
    assert settings.synth.users == 7
    assert settings.synth.items == 2000  # default kept


def test_config_path_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("synth:\n  seed: 42\n")
    monkeypatch.setenv("INTEREST_GRAPH_CONFIG", str(config))
    assert load_settings().synth.seed == 42


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("evaluation:\n  k: 0\n", "evaluation.k"),
        ("synth:\n  cart_rate: 1.5\n", "synth.cart_rate"),
        ("no_such_section: 1\n", "no_such_section"),
        ("- a list\n", "top level must be a mapping"),
        ("evaluation: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_files_name_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert message in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "absent.yaml")


def test_invalid_environment_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTEREST_GRAPH__EVALUATION__K", "many")
    with pytest.raises(ConfigError, match="evaluation.k"):
        load_settings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("evaluation:\n  ease_lambdaa: 10\n", "evaluation.ease_lambdaa: unknown key "
         "(did you mean ease_lambda?)"),
        ("shop:\n  events_file: e.csv\n", "shop.events_file: unknown key "
         "(did you mean events or events_path?)"),
        ("shop:\n  timestamp_fromat: '%Y'\n", "(did you mean timestamp_format?)"),
        ("paths:\n  work: /tmp/w\n", "paths.work: unknown key (did you mean "
         "work_dir?)"),
        # Sections defined outside config.py are checked the same way.
        ("serving:\n  http_prot: 9000\n", "(did you mean http_port?)"),
    ],
)  # fmt: skip
def test_misspelled_keys_in_a_section_are_rejected(
    tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert message in str(caught.value)


def test_environment_variable_naming_no_setting_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INTEREST_GRAPH__PATHS__WORK", "/tmp/w")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert (
        "INTEREST_GRAPH__PATHS__WORK: names no setting (did you mean "
        "INTEREST_GRAPH__PATHS__WORK_DIR?)" in str(caught.value)
    )


def test_environment_into_mapping_settings_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INTEREST_GRAPH__PATHS__WORK_DIR", "/tmp/w")
    monkeypatch.setenv("INTEREST_GRAPH__SHOP__EVENTS", '{"user_id": "customer"}')
    settings = load_settings()
    assert settings.paths.work_dir == Path("/tmp/w")
    assert settings.shop.events == {"user_id": "customer"}


def test_environment_below_a_plain_setting_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INTEREST_GRAPH__EVALUATION__K__MAX", "3")
    with pytest.raises(ConfigError, match="evaluation.k has no keys"):
        load_settings()


def test_sections_forbid_unknown_keys_when_built_directly() -> None:
    from pydantic import ValidationError

    from interest_graph.config import EvaluationConfig

    with pytest.raises(ValidationError, match="ease_lambdaa"):
        EvaluationConfig.model_validate({"ease_lambdaa": 1.0})
