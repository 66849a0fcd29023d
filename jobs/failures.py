"""What Ray's failures mean for the run: one line naming the stage, the partition and what to do.

:func:`explain` turns what ``ray.get`` raises into the project's own errors (:mod:`jobs.errors`); the driver's
``ray.get`` (:func:`jobs.cluster.result`) applies it to every answer it waits for::

    try:
        ray.get(ref)
    except RayError as exc:
        raise explain(exc, "tokenizing", partition) from None
    # ClusterError: tokenizing s3://corpus/dt=1/a.parquet: its worker crashed 4 times, so Ray's retries are
    # spent. Nothing was published; a rerun is safe.

No Ray call is made here; only Ray's exception types are read.
"""

from __future__ import annotations

import re

from ray.exceptions import (
    ActorUnschedulableError,
    NodeDiedError,
    ObjectLostError,
    OutOfMemoryError,
    RayActorError,
    RayError,
    RayTaskError,
    RuntimeEnvSetupError,
    WorkerCrashedError,
)

from jobs.errors import RERUN, ClusterError, RefreshError, TrainingError
from jobs.scheduling import TOKENIZE_RETRIES
from shards.partitions import Partition


def explain(exc: RayError, stage: str, partition: Partition | None = None, actor: bool = False) -> RefreshError:
    """One clear line for a failure Ray reports: what failed, where, and what to do; never a traceback.

    A partition's own error comes back as raised (a bad partition fails once and is not retried); an
    exception inside the training actor becomes a TrainingError; everything else is the infrastructure's,
    a :class:`~jobs.errors.ClusterError` (exit status 75, a rerun is safe). ``actor``: the failure came from a
    call to the training actor; unless the call itself raised (a partition's batch that Ray could not deliver
    to it), it is the actor that failed, and the message says so rather than naming a partition.

    What Ray 2.x raises, and what the message says (``ray.exceptions``, as ``ray.get`` returns them):

    * ``OutOfMemoryError``: Ray's memory monitor killed the worker (``RAY_memory_usage_threshold``), on each
      of its tries; names the node and its memory use.
    * ``RuntimeEnvSetupError``: the runtime environment (pip, conda, working_dir, ...) failed to set up on a
      node, for a task or the actor; names the node and the last line of the agent's traceback.
    * ``NodeDiedError``: the node running the task died (preempted, a raylet crash) on its last try.
    * ``WorkerCrashedError``: the worker process died (a segfault, a kill) on every try.
    * ``ObjectLostError`` and its kinds (``ObjectReconstructionFailedError`` and its subclasses,
      ``ObjectFetchTimedOutError``, ``OwnerDiedError``, ``ObjectFreedError``): a tokenized batch was lost with
      the node holding it and could not be rebuilt from lineage.
    * ``RayActorError`` (``ActorDiedError``, ``ActorUnavailableError``), ``ActorUnschedulableError``: the
      training actor died, or cannot be placed.
    """
    if isinstance(exc, RayTaskError):
        cause = exc.cause
        if isinstance(cause, RefreshError):
            return cause
        if not isinstance(cause, RayError):
            where = f"{stage} {partition.uri}" if partition is not None else stage
            return TrainingError(f"{where} failed: {type(cause).__name__}: {first_line(cause)}")
        exc, actor = cause, False  # a Ray failure that the actor's call met: the partition's batch
    who = "the training actor" if actor else "its worker"
    where = f"{stage} {partition.uri}" if partition is not None and not actor else stage
    if isinstance(exc, OutOfMemoryError):
        node, memory = _match(r"\(IP: ([^,)]+)", str(exc)), _match(r"was (\S+ used / \S+ limit)", str(exc))
        tries = "" if actor else f" on each of its {TOKENIZE_RETRIES + 1} tries"
        what = (
            f"{who} ran out of memory and Ray's memory monitor killed it{tries} (node {node or '?'}: "
            f"{memory or 'memory use over RAY_memory_usage_threshold'}); give the nodes more memory, or lower "
            "--max-in-flight or --piece-bytes"
        )
    elif isinstance(exc, RuntimeEnvSetupError):
        text = exc.error_message or ""
        node = _match(r"\[Node ([^]]+)\]", text)
        what = (
            f"the runtime environment of {who} could not be set up on node {node or '?'} "
            f"({_last_line(text) or 'no reason given'}); check the job's runtime_env (pip, conda, working_dir) "
            "against the nodes' image"
        )
    elif isinstance(exc, (RayActorError, ActorUnschedulableError)):
        what = f"the training actor died (its node may have been lost): {_last_line(str(exc))}"
    elif isinstance(exc, NodeDiedError):
        node = _match(r"Node IP: ([^,]+)", str(exc))
        what = (
            f"its node ({node or '?'}) died (preempted, a hardware failure, a raylet crash) and Ray's "
            f"{TOKENIZE_RETRIES} retries are spent"
        )
    elif isinstance(exc, WorkerCrashedError):
        what = f"its worker crashed {TOKENIZE_RETRIES + 1} times, so Ray's retries are spent"
    elif isinstance(exc, ObjectLostError):
        # a reconstruction failure says why ("... cannot be reconstructed because the maximum number of task
        # retries has been exceeded"); the other kinds are named by their type
        why = _match(r"cannot be reconstructed because ([^.]+)", str(exc)) or type(exc).__name__
        what = (
            f"its result was lost with the node that held it and could not be rebuilt ({why}); the nodes may be "
            "going away faster than Ray can rebuild their results"
        )
    else:
        what = f"{type(exc).__name__}: {first_line(exc)}"
    return ClusterError(f"{where}: {what.rstrip('.')}. {RERUN}")


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _last_line(text: str) -> str:
    """The last non-empty line of ``text`` (the exception line of a traceback), stripped."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _match(pattern: str, text: str) -> str | None:
    found = re.search(pattern, text)
    return found.group(1) if found else None
