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
