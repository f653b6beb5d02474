"""The whole hub with its state directory's disk full for a while, against a real mosquitto.

How the disk is made full, the best way this machine allows:

* ``tmpfs``: as root, a small tmpfs is mounted as the state directory and filled with a
  file until the kernel says ENOSPC; deleting the file gives the space back. This is a
  real full file system: SQLite's writes fail as on a full disk.
* ``fsize``: otherwise (not root, or no ``mount``), the test process's file-size limit
  (RLIMIT_FSIZE, no root needed) is lowered to one byte, so no file may grow (EFBIG,
  which SQLite reports as an I/O error); raising it again gives the space back.

``SENSORHUB_TEST_FULL_DISK=fsize`` picks the second where the first would work.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_protocol.virtual.emulator import Emulator
from firmware_protocol.virtual.radio import VirtualRadio
from sensorhub.ble.radio import Radio
from sensorhub.service import Service
from sensorhub.store import SessionStore
from tests.mosquitto import Mosquitto
from tests.service_helpers import Subscriber, short_scenario, subscriber, validate
from tests.test_service import BASE, make_config, pair_both, until

pytestmark = pytest.mark.timeout(300)

TMPFS_SIZE = "32m"


class FullDisk:
    """Makes a directory's disk full (:meth:`fill`) and gives the space back (:meth:`free`)."""

    method = ""

    def fill(self) -> None:
        raise NotImplementedError

    def free(self) -> None:
        raise NotImplementedError


class TmpfsDisk(FullDisk):
    """A small tmpfs mounted on the directory, filled with one file."""

    method = "tmpfs"

    def __init__(self, directory: Path) -> None:
        self.filler = directory / "filler"

    def fill(self) -> None:
        chunk = 1 << 20
        with self.filler.open("wb", buffering=0) as out:
            while chunk >= 512:
                try:
                    out.write(b"\0" * chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk //= 2  # fill the last pages too
        assert os.statvfs(self.filler.parent).f_bavail == 0

    def free(self) -> None:
        self.filler.unlink()


class FileSizeLimit(FullDisk):
    """RLIMIT_FSIZE of this process at one byte: no file may grow."""

    method = "fsize"

    def __init__(self) -> None:
        self.limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        self.handler = signal.getsignal(signal.SIGXFSZ)

    def fill(self) -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, self.limits[1]))

    def free(self) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, self.limits)
        signal.signal(signal.SIGXFSZ, self.handler)


def _mount_tmpfs(directory: Path) -> bool:
    if os.environ.get("SENSORHUB_TEST_FULL_DISK") == "fsize":
        return False
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    return mounted.returncode == 0


@contextlib.contextmanager
def full_disk(directory: Path) -> Iterator[FullDisk]:
    """The best way here to make ``directory``'s disk full; undone afterwards."""
    directory.mkdir(parents=True)
    if _mount_tmpfs(directory):
        try:
            yield TmpfsDisk(directory)
        finally:
            subprocess.run(["umount", "--lazy", str(directory)], check=True)
        return
    disk = FileSizeLimit()
    try:
        yield disk
    finally:
        disk.free()


def storage_problems(sub: Subscriber) -> list[dict[str, Any] | None]:
    """The ``storage`` problem of every hub status seen, in order (None: no problem)."""
    return [s.get("problems", {}).get("storage") for s in sub.json_on(f"{BASE}/status")]


def whole(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if not r.get("partial")]


async def test_a_full_disk_loses_no_rep_or_set_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Reps and sets made while the disk is full go out live, are stored once it has space,
    in order, and the session's summary counts exactly what is stored."""
    caplog.set_level(logging.INFO, logger="sensorhub")
    radio = VirtualRadio()
    state = tmp_path / "state"
    with full_disk(state) as disk:
        async with (
            Mosquitto(tmp_path) as broker,
            subscriber(broker.port, client_id="dashboard") as sub,
            Emulator(short_scenario(sets=3, reps=3), seed=4, radio=radio) as emulator,
            Radio.on_virtual_radio(radio, state_dir=state) as hub_radio,
        ):
            config = make_config(tmp_path, broker, state_dir=state)
            async with Service(config, radio=hub_radio) as service:
                await pair_both(service, emulator)
                session = service.start_session()
                await sub.wait_for(lambda _: bool(sub.json_on("/athletes/ada/reps")), 60, "a rep")
                disk.fill()
                await sub.wait_for(
                    lambda _: any(storage_problems(sub)), 40, "a storage problem on the status"
                )
                refused_at = len(sub.json_on(f"{BASE}/events"))
                # Reps and a set go by while the disk refuses: live all the same.
                await sub.wait_for(
                    lambda _: (
                        any(e["type"] == "set" for e in sub.json_on(f"{BASE}/events")[refused_at:])
                        and sum(
                            e["type"] == "rep" for e in sub.json_on(f"{BASE}/events")[refused_at:]
                        )
                        >= 2
                    ),
                    60,
                    "reps and a set published while the disk is full",
                )
                problem = service.store.problem
                assert problem is not None
                assert problem["held_events"] >= 3
                disk.free()
                await sub.wait_for(
                    lambda _: storage_problems(sub)[-1] is None, 30, "the storage problem to clear"
                )
                await until(
                    lambda: len(whole(service.store.reps(session.id))) >= 9, 90, "the last rep"
                )
                await until(lambda: len(service.store.sets(session.id)) >= 3, 30, "the last set")
                ended = service.stop_session()
                await sub.wait_for(
                    lambda _: any(e.get("event") == "stopped" for e in sub.json_on("/events")),
                    20,
                    "the session's end",
                )
            # Read as `sensorhub sessions list` does, before the tmpfs goes with its files.
            reader = SessionStore.open_readonly(SessionStore.path_in(state))
            try:
                stored_reps = reader.reps(ended.id)
                stored_sets = reader.sets(ended.id)
                listed = {s["id"]: s for s in reader.sessions()}[ended.id]
            finally:
                reader.close()
        method = disk.method

    # --- stored: everything that was published, once, in order -----------------------------
    published_reps = list({r["seq"]: r for r in sub.json_on("/athletes/ada/reps")}.values())
    published_sets = list({s["seq"]: s for s in sub.json_on("/athletes/ada/sets")}.values())
    assert [r["t_end"] for r in published_reps] == [r["t_end"] for r in stored_reps]
    assert [s["t_end"] for s in published_sets] == [s["t_end"] for s in stored_sets]
    assert len(published_sets) == 3

    # --- the summary is true ----------------------------------------------------------------
    stopped = next(e for e in sub.json_on(f"{BASE}/events") if e.get("event") == "stopped")
    validate(stopped, "session")
    assert (stopped["sets"], stopped["reps"]) == (3, len(whole(stored_reps)))
    assert (listed["sets"], listed["reps"]) == (stopped["sets"], stopped["reps"])
    assert (ended.sets, ended.reps) == (stopped["sets"], stopped["reps"])

    # --- told on the status, and in the log once each way -----------------------------------
    shown = [p for p in storage_problems(sub) if p is not None]
    for status in sub.json_on(f"{BASE}/status"):
        validate(status, "hub_status")
    assert any(p["held_events"] > 0 for p in shown)
    assert len(shown) <= 2 + 40 / 5  # counts refreshed at most every 5 s, not per tick
    store_lines = [r.getMessage() for r in caplog.records if r.name == "sensorhub.store.db"]
    assert sum("until then what arrives is held" in line for line in store_lines) == 1
    (back,) = [line for line in store_lines if "takes writes again" in line]
    assert "reps" in back
    assert "sets" in back
    assert not [r for r in caplog.records if "cannot record a" in r.getMessage()]
    # The best method available ran: root with `mount` never falls back unasked.
    can_mount = os.geteuid() == 0 and shutil.which("mount") is not None
    asked = os.environ.get("SENSORHUB_TEST_FULL_DISK", "tmpfs")
    assert method == ("tmpfs" if can_mount and asked != "fsize" else "fsize")
