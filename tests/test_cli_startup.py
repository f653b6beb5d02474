"""The CLI starts light: parsing arguments imports none of the heavy packages.

``--help``, usage errors and light commands such as ``sessions list`` pay for whatever
building the parser imports; Bumble, SciPy, MQTT and rich belong to the commands that
use them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = frozenset({"aiomqtt", "bleak", "bumble", "imufusion", "paho", "rich", "scipy"})

PROBE = """
import json, sys
from sensorhub.cli import build_parser, main
argv = json.loads(sys.argv[1])
try:
    if argv:
        main(argv)
    else:
        build_parser()
except SystemExit:  # --help and usage errors
    pass
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def imported_packages(*argv: str) -> set[str]:
    """Top-level packages a fresh interpreter has imported after the CLI handled ``argv``."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param((), id="build_parser"),
        pytest.param(("--help",), id="help"),
        pytest.param(("sessions", "--help"), id="sessions-help"),
        pytest.param(("bench", "--only", "nothing"), id="usage-error"),
    ],
)
def test_parsing_imports_no_heavy_package(argv: tuple[str, ...]) -> None:
    assert imported_packages(*argv) & HEAVY == set()
