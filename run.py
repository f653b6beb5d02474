#!/usr/bin/env python3
"""Set up and run sensorhub from a fresh clone with nothing but Python 3.11+ and pip.

    python3 run.py demo [ARGS…]    the live demo (virtual sensors), set-up included
    python3 run.py test [ARGS…]    the whole test suite (pytest ARGS…), set-up included;
                                   tests run in parallel, a worker per core up to
                                   four (give -n N to choose, -n 0 for one process)
    python3 run.py check           linters: ruff and mypy (strict)
    python3 run.py sensorhub ARGS  any sensorhub command

The first run creates ``.venv`` beside this file and installs the project into it: the
demo and sensorhub commands install only what sensorhub needs, test and check add the
test tools. Later runs reinstall only when ``pyproject.toml`` changes. The tests need
mosquitto (the MQTT broker they start on free ports): as root with apt it is installed,
otherwise the test command stops at once and names the command that installs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".sensorhub-installed"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
EXTRAS: dict[str, frozenset[str]] = {
    "demo": frozenset(),
    "sensorhub": frozenset(),
    "test": frozenset({"test"}),
    "check": frozenset({"test"}),
}
"""The optional dependencies each task needs (pyproject.toml's [project.optional-dependencies])."""
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto",)
"""Where Debian puts mosquitto, outside an ordinary user's PATH."""


def _python() -> Path:
    return BIN / ("python.exe" if os.name == "nt" else "python")


def install_plan(stamp: str | None, pyproject_hash: str, wanted: frozenset[str]) -> set[str] | None:
    """The extras to install now (None: the environment already has what is wanted).

    ``stamp`` is what the last install wrote: the hash of the pyproject.toml it installed
    and its extras. While that file is unchanged, extras installed once stay installed.
    """
    try:
        last = json.loads(stamp) if stamp else {}
    except ValueError:
        last = {}
    if not isinstance(last, dict) or last.get("pyproject") != pyproject_hash:
        return set(wanted)
    have = set(last.get("extras") or [])
    return None if wanted <= have else have | wanted


def ensure_environment(wanted: frozenset[str]) -> None:
    """Create the virtual environment and install the project with ``wanted`` extras if stale."""
    if sys.version_info < (3, 11):  # noqa: UP036 - run.py may meet an older python3
        sys.exit(f"sensorhub needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    pyproject_hash = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = STAMP.read_text() if STAMP.exists() else None
    extras = install_plan(stamp, pyproject_hash, wanted) if _python().exists() else set(wanted)
    if extras is None:
        return
    if not _python().exists():
        print(f"run.py: creating a virtual environment in {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    what = "sensorhub and its test tools" if extras else "sensorhub"
    print(f"run.py: installing {what} (once)", file=sys.stderr)
    pip = [str(_python()), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    # setuptools tells of every editable install that a folder named like the package
    # could shadow it: that folder is this one, on purpose, so the notice is not shown.
    env = {**os.environ, "PYTHONWARNINGS": "ignore:Editable installation"}
    subprocess.run([*pip, "--upgrade", "pip"], check=True, env=env)
    target = f"{ROOT}[{','.join(sorted(extras))}]" if extras else str(ROOT)
    subprocess.run([*pip, "-e", target], check=True, env=env)
    STAMP.write_text(json.dumps({"pyproject": pyproject_hash, "extras": sorted(extras)}))


def _mosquitto_install_command() -> str:
    """The one command that installs mosquitto here, for people to run."""
    sudo = "" if os.name == "posix" and os.geteuid() == 0 else "sudo "
    for tool, command in (
        ("apt-get", f"{sudo}apt-get install mosquitto"),
        ("dnf", f"{sudo}dnf install mosquitto"),
        ("brew", "brew install mosquitto"),
    ):
        if shutil.which(tool):
            return command
    return "install mosquitto from https://mosquitto.org/download/"


def ensure_mosquitto() -> None:
    """Install mosquitto for the tests where run.py may (root with apt), else stop and say how."""
    if shutil.which("mosquitto") or any(Path(p).exists() for p in MOSQUITTO_PATHS):
        return
    apt = shutil.which("apt-get")
    if apt and os.name == "posix" and os.geteuid() == 0:
        print("run.py: the tests need mosquitto; installing it with apt-get", file=sys.stderr)
        quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "mosquitto"]):
            if subprocess.run(step, env=quiet, check=False).returncode:
                sys.exit(f"run.py: `{' '.join(step)}` failed; install mosquitto and run again")
        return
    sys.exit(
        "run.py: the tests need mosquitto (an MQTT broker they start on free ports), and it "
        f"is not installed. Install it with:\n    {_mosquitto_install_command()}"
    )


def _workers(pytest_args: list[str]) -> list[str]:
    """pytest-xdist workers, unless the arguments choose: most tests wait on real time
    (virtual sensors, brokers), so a worker per core halves the suite's wall time."""
    chosen = any(
        arg.startswith(("-n", "--numprocesses")) or arg.endswith("no:xdist") for arg in pytest_args
    )
    return [] if chosen else ["-n", str(min(4, os.cpu_count() or 1))]


def main(argv: list[str]) -> int:
    """Dispatch to the task named by the first argument."""
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0 if argv else 2
    task, rest = argv[0], argv[1:]
    if task not in EXTRAS:
        print(f"run.py: unknown task {task!r}; try demo, test, check or sensorhub", file=sys.stderr)
        return 2
    if task == "test":
        ensure_mosquitto()  # before minutes of installing: the suite cannot pass without it
    ensure_environment(EXTRAS[task])
    python = str(_python())
    if task == "demo":
        command = [python, "-m", "sensorhub", "demo", *rest]
    elif task == "test":
        command = [python, "-m", "pytest", *_workers(rest), *rest]
    elif task == "check":
        for step in (
            [python, "-m", "ruff", "check", "."],
            [python, "-m", "ruff", "format", "--check", "."],
            [python, "-m", "mypy"],
        ):
            if subprocess.run(step, cwd=ROOT, check=False).returncode:
                return 1
        return 0
    else:
        command = [python, "-m", "sensorhub", *rest]
    return subprocess.run(command, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
