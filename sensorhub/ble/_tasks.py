"""Telling a real cancellation of the running task from a CancelledError that is not one."""

from __future__ import annotations

import asyncio

__all__ = ["cancelled_by_us"]


def cancelled_by_us() -> bool:
    """Whether a CancelledError being handled is a real cancellation of this task.

    Bumble cancels the futures of pending ATT requests when a link drops, so a request
    on a dying link raises CancelledError though nobody cancelled us. Let that escape
    and it ends the caller's task as if it had been stopped: a link that silently
    never reconnects. Swallow a real one and the task outlives its stop: a hub that
    does not shut down.
    """
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0
