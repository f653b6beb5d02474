"""run.py, the quick start: what each task installs, and mosquitto for the tests."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_py() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_py", ROOT / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_installs_no_test_tools(run_py: ModuleType) -> None:
    assert run_py.EXTRAS["demo"] == frozenset()
    assert run_py.EXTRAS["sensorhub"] == frozenset()
    assert run_py.EXTRAS["test"] == run_py.EXTRAS["check"] == {"test"}
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set().union(*run_py.EXTRAS.values()) <= set(extras["optional-dependencies"])


def test_an_install_is_redone_only_for_what_is_missing(run_py: ModuleType) -> None:
    plan = run_py.install_plan
    nothing, tools = frozenset(), frozenset({"test"})
    assert plan(None, "h1", nothing) == set()  # first run of the demo: sensorhub alone
    demo = json.dumps({"pyproject": "h1", "extras": []})
    assert plan(demo, "h1", nothing) is None
    assert plan(demo, "h1", tools) == {"test"}  # then the tests: their tools are added
    tested = json.dumps({"pyproject": "h1", "extras": ["test"]})
    assert plan(tested, "h1", nothing) is None  # the demo after the tests: all there
    assert plan(tested, "h2", nothing) == set()  # pyproject.toml changed: install again
    assert plan("69fa721d4f0e", "h1", tools) == {"test"}  # an older run.py's stamp


def test_the_license_is_an_spdx_expression() -> None:
    # A TOML table here made setuptools print screens of deprecation warnings at set-up.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in project["build-system"]["requires"]  # reads SPDX strings


def _no_mosquitto(run_py: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(run_py, "MOSQUITTO_PATHS", (str(tmp_path / "none"),))
    real_which = run_py.shutil.which
    monkeypatch.setattr(
        run_py.shutil,
        "which",
        lambda name: None if name == "mosquitto" else real_which(name),
    )


def test_without_mosquitto_the_tests_stop_at_once_with_the_command_that_installs_it(
    run_py: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_mosquitto(run_py, monkeypatch, tmp_path)
    monkeypatch.setattr(run_py.os, "geteuid", lambda: 1000)
    only_apt = {"apt-get": "/usr/bin/apt-get"}  # a Debian machine, no mosquitto
    monkeypatch.setattr(run_py.shutil, "which", only_apt.get)
    installed: list[object] = []
    monkeypatch.setattr(run_py, "ensure_environment", installed.append)
    with pytest.raises(SystemExit) as stopped:
        run_py.main(["test"])
    assert "the tests need mosquitto" in str(stopped.value.code)
    assert str(stopped.value.code).endswith("\n    sudo apt-get install mosquitto")
    assert installed == []  # stopped before minutes of installing


def test_as_root_with_apt_the_test_command_installs_mosquitto(
    run_py: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_mosquitto(run_py, monkeypatch, tmp_path)
    monkeypatch.setattr(run_py.os, "geteuid", lambda: 0)
    ran: list[list[str]] = []

    def fake_run(command: list[str], **_options: Any) -> subprocess.CompletedProcess[str]:
        ran.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(run_py.subprocess, "run", fake_run)
    if run_py.shutil.which("apt-get") is None:
        pytest.skip("no apt-get here")
    run_py.ensure_mosquitto()
    assert [c[1:] for c in ran] == [["update", "-qq"], ["install", "-y", "-qq", "mosquitto"]]


def test_an_unknown_task_installs_nothing() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "deploy"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown task 'deploy'" in result.stderr
