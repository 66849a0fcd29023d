"""The driver's logging: text lines by default, JSON lines on request, each naming the runbook's stage.

    from jobs import logs
    logs.configure("json")                 # in main(), once the flags are read (--log-format json)
    logs.enter("tokenize")                 # in the runbook, as each step begins
    log.info("tokenized %d partitions", n)
    # {"time": "2026-12-01T02:00:04.512Z", "level": "INFO", "logger": "jobs.tokenize", "stage": "tokenize",
    #  "message": "tokenized 12 partitions", "run": "refresh-20261201T020000Z"}

A JSON line always has ``time``, ``level``, ``logger``, ``stage`` (empty before the first step) and
``message``, ``run`` once the run has an id, and ``error`` (the exception's type and message; ``traceback``
too for an unexpected one) when one is logged. Ray's own driver-side loggers go through the same handler, so
the driver's stream is JSON lines only; the workers' and actors' lines are JSON too, through Ray's
``LoggingConfig`` (:func:`jobs.cluster.connected`), and stay in each node's log files (Ray's dashboard and a
log collector read them there) instead of being echoed, prefixed, into the driver's stream.

No credential reaches a line: the values of the credential variables in the driver's environment
(:data:`SECRET_VARIABLES`: the AWS keys, the Ray cluster's auth token, a manifest signing key given through
the environment) are replaced by ``***`` in every message, text or JSON, as the S3 store's errors are (belt
and braces: no message should carry one).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from contextvars import ContextVar

from jobs.errors import RefreshError

STAGE: ContextVar[str] = ContextVar("stage", default="")
RUN: ContextVar[str] = ContextVar("run", default="")
# KubeRay sets RAY_AUTH_TOKEN in every Ray container (and submitters carry it). EMBEDDING_REFRESH_SIGNING_KEY
# names the signing key's file (docs/signing.md); redacted all the same, should the key itself be put there.
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "RAY_AUTH_TOKEN",
    "EMBEDDING_REFRESH_SIGNING_KEY",
)
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def enter(stage: str) -> None:
    """Name the runbook's step now beginning; every line logged from here on carries it."""
    STAGE.set(stage)


def run(run_id: str) -> None:
    """Name the run (its record's id, ``runs/<run>.json``); every JSON line from here on carries it."""
    RUN.set(run_id)


class Redact(logging.Filter):
    """Replace credentials taken from the environment by ``***`` in a record's message, and give the record
    the current stage and run (for any format)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for secret in self.secrets:
            message = message.replace(secret, "***")
        record.msg, record.args = message, None
        record.stage, record.run = STAGE.get(), RUN.get()
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record (see the module docstring for its fields)."""

    def __init__(self, redact: Redact) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "stage": getattr(record, "stage", ""),
            "message": record.getMessage(),
        }
        if getattr(record, "run", ""):
            line["run"] = record.run  # type: ignore[attr-defined]
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            line["error"] = self._clean(f"{type(error).__name__}: {error}")
            if not isinstance(error, RefreshError):  # a bug: its traceback, in one field
                line["traceback"] = self._clean("".join(traceback.format_exception(*record.exc_info)))
        return json.dumps(line, ensure_ascii=False)

    def _clean(self, text: str) -> str:
        for secret in self.redact.secrets:
            text = text.replace(secret, "***")
        return text


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    """The driver's root logger: one handler on stderr, text or JSON lines, credentials redacted."""
    secrets = [v for v in (os.environ.get(name) for name in SECRET_VARIABLES) if v and len(v) >= 4]
    redact = Redact(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(redact)
    handler.setFormatter(JsonLines(redact) if log_format == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("gensim").setLevel(logging.WARNING)


def adopt_ray_loggers() -> None:
    """Send the driver's ``ray`` loggers through the root handler again: ``ray.init`` with a LoggingConfig
    gives the driver's root and ``ray`` loggers a handler of its own, which would print every line twice, or
    in Ray's format instead of this one."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if any(isinstance(f, Redact) for f in h.filters)]
    if not ours:
        return  # logging is not ours to arrange (a library caller, a test)
    for handler in root.handlers[:]:
        if handler not in ours:
            root.removeHandler(handler)
    ray_logger = logging.getLogger("ray")
    for handler in ray_logger.handlers[:]:
        ray_logger.removeHandler(handler)
    ray_logger.setLevel(logging.WARNING)
    ray_logger.propagate = True
