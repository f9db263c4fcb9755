"""Structured logs: one JSON object a line on stderr, with every configured secret masked out of it."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable

import orjson
from groupspec.middleware.config import Config
from groupspec.middleware.quarantine import iso

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}
MASK = "***"


def secrets_of(config: Config) -> list[str]:
    """The secret values the config holds (write keys, Customer.io credentials, the upstream write keys) that are
    long enough to mask without mangling a log line."""
    values = [secret for src in config.sources.values()
              for secret in (src.write_key, src.upstream_write_key, src.webhook_secret)]
    values += [config.customerio.site_id, config.customerio.api_key, config.upstream.write_key,
               config.service.operator_token]
    return [v.get_secret_value() for v in values if v is not None and len(v.get_secret_value()) >= 4]


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", ...extra}`; any secret in the line is replaced by `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": iso(record.created), "level": record.levelname.lower(), "logger": record.name,
                 "msg": record.getMessage()}
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        line = orjson.dumps(entry, default=str).decode()
        for secret in self.secrets:
            line = line.replace(secret, MASK)
        return line


def configure(config: Config, level: int = logging.INFO) -> None:
    """Send the groupspec and uvicorn logs to stderr as JSON lines; quiet httpx's per-request lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets_of(config)))
    for name in ("groupspec", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def capture_uncaught(logger: str = "groupspec.service") -> None:
    """Log an exception nobody caught (in the main thread or any other) as one JSON line of `logger`, with its
    traceback in `error`, instead of the interpreter's raw traceback on stderr."""
    log = logging.getLogger(logger)

    def main_thread(kind: type[BaseException], exc: BaseException, tb: object) -> None:
        if issubclass(kind, KeyboardInterrupt):
            return sys.__excepthook__(kind, exc, tb)
        log.critical("uncaught exception; the process stops", exc_info=(kind, exc, tb))

    def other_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        log.critical("uncaught exception in a thread", exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
                     extra={"thread_name": args.thread.name if args.thread is not None else None})

    sys.excepthook = main_thread
    threading.excepthook = other_thread
