"""Stopping a run cleanly: SIGINT, SIGTERM and SIGHUP set a stop event while a run writes, and
the run raises :class:`Interrupted` once everything finished is recorded."""

from __future__ import annotations

import signal
import threading


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT, SIGTERM or SIGHUP, raised once everything finished is recorded.

    ``exit_code`` is the shell's convention, 128 + the signal's number (130, 143, 129).
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum
        try:
            self.name = signal.Signals(signum).name
        except ValueError:
            self.name = f"signal {signum}"


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class StopOnSignal:
    """While a run writes, SIGINT, SIGTERM and SIGHUP set ``stop`` instead of killing it mid-write.

    Local workers then abandon the images not yet committed (their temporary
    files removed), Ray's driver sends no more and waits for those in flight,
    the driver writes the rows of the images finished, and ``run`` raises
    :class:`Interrupted`. A second signal stops at once (KeyboardInterrupt).
    Only in the main thread (Python's rule for handlers); elsewhere nothing changes.
    """

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.signum: int | None = None
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum
        self.stop.set()

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                try:
                    if signal.getsignal(sig) is signal.SIG_IGN:
                        continue  # e.g. SIGHUP under nohup: the user asked for it to be ignored
                    self._old[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            # None: a handler set outside Python (Ray's, in C), which Python cannot put back.
            signal.signal(sig, signal.SIG_DFL if old is None else old)
        self._old = {}
