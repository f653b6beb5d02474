#!/usr/bin/env python3
"""Set up and run sensorhub from a fresh clone with nothing but Python 3.11+ and pip.

    python3 run.py demo [ARGS…]    the live demo (virtual sensors), set-up included
    python3 run.py test [ARGS…]    the whole test suite (pytest ARGS…), set-up included;
                                   tests run in parallel, a worker per core up to
                                   four (give -n N to choose, -n 0 for one process)
    python3 run.py check           linters: ruff and mypy (strict)
    python3 run.py sensorhub ARGS  any sensorhub command

The first run creates ``.venv`` beside this file and installs the project into it;
later runs reinstall only when ``pyproject.toml`` changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".sensorhub-installed"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _python() -> Path:
    return BIN / ("python.exe" if os.name == "nt" else "python")


def ensure_environment() -> None:
    """Create the virtual environment and install the project (with test tools) if stale."""
    if sys.version_info < (3, 11):  # noqa: UP036 - run.py may meet an older python3
        sys.exit(f"sensorhub needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and _python().exists():
        return
    if not _python().exists():
        print(f"run.py: creating a virtual environment in {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("run.py: installing sensorhub and its test tools (first run only)", file=sys.stderr)
    pip = [str(_python()), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(wanted)


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
    ensure_environment()
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
    elif task == "sensorhub":
        command = [python, "-m", "sensorhub", *rest]
    else:
        print(f"run.py: unknown task {task!r}; try demo, test, check or sensorhub", file=sys.stderr)
        return 2
    return subprocess.run(command, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
