"""Helper threads of the monitor that leave process signals to the tracer (main) thread.

The tracer thread spends its time blocked in waitpid, in Python or in the native loop. Ctrl-C
or SIGTERM must interrupt that wait so the monitor stops (and the program with it, EXITKILL);
the kernel delivers a process signal to any thread that does not block it, so the monitor's
other threads (the audit-log writer, the periodic measurement, the run's timeout) block them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

PROCESS_SIGNALS = frozenset(
    {
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGALRM,
        signal.SIGUSR1,
        signal.SIGUSR2,
    }
)


def helper_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread running `target` with the process signals blocked (not started)."""

    def run() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, PROCESS_SIGNALS)
        target()

    return threading.Thread(target=run, name=name, daemon=True)
