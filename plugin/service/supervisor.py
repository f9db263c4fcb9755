"""The service's handle on its delivery process (`child.py`): starts it, wakes it when requests are spooled,
restarts it if it dies, and stops it at shutdown. The process inherits the spool lock, so the spool stays locked
until both are gone; it exits by itself when the service dies (end of file on its stdin)."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
import time

from groupspec.middleware import Config

log = logging.getLogger("groupspec.service")
WAKE, QUIT = b"w", b"q"  # the notices on the process's stdin, after the config

RESTART_PAUSE = 0.5  # seconds before a died delivery process is started again ...
MAX_RESTART_PAUSE = 30.0  # ... doubling, up to this, while it keeps dying within a minute of its start
STABLE = 60.0


class DeliveryProcess:
    """`start()`, `wake()`, `stop()`; `running` is False while the process is down (died, not yet restarted)."""

    def __init__(self, config: Config, lock_fd: int) -> None:
        self.config = config
        self.lock_fd = lock_fd
        self._proc: subprocess.Popen | None = None
        self._pipe: int | None = None
        self._started_at = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="groupspec-delivery-process", daemon=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> DeliveryProcess:
        with self._lock:
            self._spawn()
        self._monitor.start()
        return self

    def _spawn(self) -> None:
        config = pickle.dumps(self.config)
        read, write = os.pipe()
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "groupspec.plugin.service.child"], stdin=read,
                                          pass_fds=(self.lock_fd,))
        finally:
            os.close(read)
        self._pipe = write
        try:
            with os.fdopen(os.dup(write), "wb") as pipe:  # the whole config, however large, before any notice
                pipe.write(len(config).to_bytes(8, "big") + config)
        except OSError:  # it died at once: the monitor sees the exit and starts it again
            pass
        os.set_blocking(write, False)
        self._started_at = time.monotonic()
        log.info("delivery process started", extra={"pid": self._proc.pid})

    def wake(self) -> None:
        """Tell the process that new entries are in the spool (never blocks: a full pipe already says so)."""
        self._notify(WAKE)

    def _notify(self, notice: bytes) -> None:
        pipe = self._pipe
        if pipe is None:
            return
        try:
            os.write(pipe, notice)
        except OSError:  # full (the process has unread notices), or the process is gone (the monitor sees it)
            pass

    def _watch(self) -> None:
        pause = RESTART_PAUSE
        while True:
            proc = self._proc
            status = proc.wait()
            if self._stopping.is_set():
                return
            pause = RESTART_PAUSE if time.monotonic() - self._started_at > STABLE else pause
            log.error("delivery process died; restarting", extra={"pid": proc.pid, "status": status, "pause": pause})
            if self._stopping.wait(pause):
                return
            pause = min(MAX_RESTART_PAUSE, pause * 2)
            with self._lock:
                if self._stopping.is_set():
                    return
                self._close_pipe()
                try:
                    self._spawn()
                except OSError as exc:  # cannot start a process now (no memory, no pids): the next round tries
                    log.error("cannot start the delivery process", extra={"error": str(exc)})

    def stop(self, timeout: float = 15.0) -> None:
        """Let the process finish or abandon its chunk (it stays spooled) and exit; kill it after `timeout`."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is None:
            return
        self._notify(QUIT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("delivery process did not stop; killing it", extra={"pid": proc.pid})
            proc.kill()
            proc.wait()
        self._close_pipe()
        if self._monitor.ident is not None:
            self._monitor.join()

    def _close_pipe(self) -> None:
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
