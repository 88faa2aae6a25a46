"""The Ray engine: the same folder job, its images processed by actors on a Ray cluster.

The only module that imports ``ray`` (an optional extra: ``pip install
'batchsr[ray]'``), and only when ``--engine ray`` is used.

What stays on the driver (``pipeline.run``): the lock, discovery, the resume
filter, the skip and up-to-date rows, the resume record and the one report
writer, exactly as with the local engine. What runs on the workers: only
:func:`batchsr.process.process`, the same function the local engine calls,
so outputs, rows and atomic writes cannot differ.

- Ray is started on this machine (``ray.init(address="local")``) unless
  ``--ray-address`` names a cluster to join (``auto`` or ``HOST:PORT``).
  Either way this batchsr package travels to the workers
  (``runtime_env={"py_modules": [...]}``), and each worker's code fingerprint
  is compared with the driver's, so every node runs the driver's code.
- Each actor reserves ``--threads`` CPUs (default 2; its ``--jobs`` images
  in flight share them, :func:`batchsr.session.threads_per_job`), builds one
  onnxruntime session once from the model's bytes (checksum verified, :func:`batchsr.models.from_bytes`), and works on
  ``--jobs`` images at a time, as one local run does. As many actors start as
  the cluster's free CPUs hold, never more than there are images.
- Before the batch, every actor proves that it reads INPUT (the first image
  to do) and OUTPUT, the driver's own folder (a token file the driver wrote
  there), and that it can write into OUTPUT (a probe file it then removes);
  otherwise the run stops with one line (:class:`EngineUnavailable`, exit 2)
  before anything is processed.
- Work streams: the driver sends a job (paths, not pixels) only when an actor
  has room (``2 x --jobs`` queued per actor), yields the results in input
  order, and holds at most a window of results: no image is ever decoded on
  the driver, whose memory is the plan (a few hundred bytes per file, as
  with the local engine) plus that window.

A worker returns the row and the finished file's stat, and the driver writes
the resume record on receipt, after the worker renamed the output into
place. A kill of the driver in between costs at most redoing images that
were finished but not yet recorded: those in flight, at most the window of
``actors x 2 x --jobs`` (a ``pending`` line written before each job is sent
tells a rerun that such an output is batchsr's, not the user's). A worker process that dies (killed for memory, a
lost node) is replaced and its images are tried once more; an image that
kills a worker twice gets an error row like any other bad input.

Why plain actors and not Ray Data's ``map_batches`` with an actor pool:
measured on a 2-core machine (docs/ray.md; ``python benchmarks/engines.py
--dispatch``, 30 ms no-op items, one per call as images differ in size), Ray
Data cost 26 ms per item where the ideal is 15 and plain actors fed through
``ray.wait`` 17, and it spent about 6 s per run planning and starting its pool.
The driver must also interleave its own skip rows in order, probe every
worker, and turn a worker's death into a retry or one image's error row,
which plain actors make direct.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import secrets
import socket
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

from batchsr import models
from batchsr.atomic import TMP_SUFFIX
from batchsr.choice import Choice, session_options
from batchsr.distribute import EngineUnavailable, ItemWork
from batchsr.report import ERROR, OK, Row
from batchsr.runner import ImageRunner
from batchsr.session import threads_per_job
from batchsr.tuning import own_process

log = logging.getLogger("batchsr")

EXTRA = "pip install 'batchsr[ray]'"
PACKAGE_DIR = Path(__file__).resolve().parent
# CPUs (and onnxruntime threads) per actor when --threads is not given: two
# keeps small images efficient and matches one local run on a 2-core machine.
DEFAULT_ACTOR_CPUS = 2
# How long the workers may take to start (a busy or autoscaling cluster).
START_TIMEOUT_S = 300.0
# Names batchsr's stale-temporary cleanup removes if a kill leaves them behind.
PROBE_PREFIX = ".batchsr-probe."
SHARED_FS = "INPUT and OUTPUT must be on a filesystem that every Ray node mounts at the same path"


def require_ray():
    """The ``ray`` module, or EngineUnavailable naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise EngineUnavailable(f"--engine ray needs Ray, which is not installed: {EXTRA}") from None
    return ray


def runtime_env() -> dict:
    """The Ray runtime environment batchsr's workers need: this batchsr package, shipped by Ray.

    batchsr passes it to ``ray.init``; a program that starts Ray itself before
    running batchsr (a notebook, the tests) passes it too, unless every node
    has this very batchsr installed (the workers' code is checked either way).
    """
    return {"py_modules": [str(PACKAGE_DIR)]}


def code_fingerprint() -> str:
    """SHA-256 over this batchsr's Python sources: equal on two machines iff they run the same code."""
    h = hashlib.sha256()
    for p in sorted(PACKAGE_DIR.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def probe_paths(input_path: str, sample: str | None, output: str, token_name: str, token: str) -> str | None:
    """None if this machine reads INPUT (and ``sample``, a file in it) and writes into the driver's OUTPUT.

    OUTPUT must hold ``token_name`` with ``token`` in it (the driver wrote it,
    so a different folder at the same path is caught), and a probe file must
    be creatable and removable there. Otherwise a one-line reason.
    """

    try:
        os.stat(input_path)
        if sample:
            with open(sample, "rb") as f:
                f.read(1)
    except OSError as exc:
        return f"cannot read INPUT {exc.filename or input_path}: {exc.strerror or exc}"
    try:
        seen = (Path(output) / token_name).read_text()
    except OSError:
        seen = None
    if seen != token:
        return f"does not see the driver's OUTPUT {output} (a missing or different folder at that path)"
    probe = Path(output) / f"{PROBE_PREFIX}{token}.{socket.gethostname()}.{os.getpid()}{TMP_SUFFIX}"
    try:
        probe.write_bytes(b"batchsr write probe\n")
        probe.unlink()
    except OSError as exc:
        return f"cannot write into OUTPUT {output}: {exc.strerror or exc}"
    return None


class ImageWorker:
    """A Ray actor (wrapped by ``ray.remote`` at run time): one onnxruntime session per model of the
    run's Choice (two with ``--model auto``), built once.

    ``process`` runs :func:`batchsr.process.process` on one job, with up to
    ``--jobs`` calls at once in threads (onnxruntime sessions are thread-safe),
    and returns ``(row, stat)``: the finished output's stat, or None.
    """

    def __init__(self, names: tuple, rule, cfg, output_root: str, threads: int, cpus: int, *blobs: bytes):
        """``names`` the (label name, sha256) of each model in ``blobs``, their bytes (top-level
        arguments, so that Ray hands over the object store's copy): the clean model, then
        with ``rule`` the damaged one."""

        own_process()  # this actor's process is batchsr's: its cores and memory are the images'
        self.cfg = cfg
        self.output_root = Path(output_root)
        options = session_options(cfg, threads)
        loaded = [models.from_bytes(b, name, sha, options) for (name, sha), b in zip(names, blobs, strict=True)]
        self.choice = Choice(loaded[0], loaded[1], rule) if len(loaded) > 1 else Choice(loaded[0])
        # The local engine's per-image part: memory budget, and every CPU for an image that runs alone.
        self.runner = ImageRunner(cfg, self.choice, cores=cpus, adapt=True)

    def probe(self, input_path: str, sample: str | None, token_name: str, token: str) -> dict:
        return {
            "host": socket.gethostname(),
            "code": code_fingerprint(),
            "where": str(PACKAGE_DIR),
            "problem": probe_paths(input_path, sample, str(self.output_root), token_name, token),
        }

    def process(self, job):
        stats = []
        row = self.runner(job, self.output_root, on_commit=lambda r, st: stats.append(st))
        return row, (stats[-1] if stats else None)


def _one_line(exc: BaseException) -> str:
    """The most telling line of an exception whose text may be a whole remote traceback."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


@dataclasses.dataclass
class _Pending:
    item: object
    row: object = None  # a row the driver settled itself
    ref: object = None  # or the worker's (row, stat) to come
    job: object = None
    key: str | None = None
    actor: object = None  # the handle it was sent to
    tries: int = 0


class RayDistributor:
    """The distributor of ``distribute.py`` on a Ray cluster: ``map(work, items)`` in order, bounded.

    ``work`` is a :class:`batchsr.distribute.ItemWork`: its parts run here, and the
    per-image part (``runner.ImageRunner``, built on each actor) there. Construction starts or joins Ray, starts
    the actors and probes them; it raises EngineUnavailable with one line if
    the job cannot run there.
    """

    def __init__(self, cfg, choice, todo: list):
        self._ray = require_ray()
        self.cfg = cfg
        self._owns_ray = False
        self._actors: list = []
        self._load: list[int] = []
        self._inflight: dict = {}  # ObjectRef -> actor index, until harvested
        self._done: set = set()
        try:
            self._connect()
            self._start(choice, todo)
        except BaseException:
            self.close()
            raise

    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            log.debug("using the Ray this process already started")
            return
        address = self.cfg.ray_address or "local"
        kwargs = {
            "address": address,
            "runtime_env": runtime_env(),
            "log_to_driver": self.cfg.verbose,
            "logging_level": logging.INFO if self.cfg.verbose else logging.ERROR,
        }
        if address == "local":
            kwargs["include_dashboard"] = False
            # A Ray started for one run needs no metrics agent (measured: on 2 cores it
            # took about a tenth of the throughput) and must not phone home.
            os.environ.setdefault("RAY_enable_metrics_collection", "0")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(**kwargs)
        except Exception as exc:
            what = "start Ray on this machine" if address == "local" else f"join the Ray cluster at {address}"
            raise EngineUnavailable(f"cannot {what}: {_one_line(exc)}") from None
        self._owns_ray = True

    def _start(self, choice, todo: list) -> None:

        ray, cfg = self._ray, self.cfg
        node_cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
        if max(node_cpus, default=0) < 1:
            raise EngineUnavailable("the Ray cluster has no node with a CPU for batchsr's workers")
        cpus = min(cfg.threads or DEFAULT_ACTOR_CPUS, max(node_cpus))
        free = int(ray.available_resources().get("CPU", 0))
        n = max(1, min(len(todo), sum(c // cpus for c in node_cpus), free // cpus))

        # The models travel as bytes, once into the object store: nodes need not have their files.
        self._model_refs = []
        for model in choice.models:
            data = model.source.read_bytes()
            if hashlib.sha256(data).hexdigest() != model.sha256:
                raise EngineUnavailable(f"{model.source} changed since it was loaded; run again")
            self._model_refs.append(ray.put(data))
        names = tuple((m.name, m.sha256) for m in choice.models)
        # No max_restarts: Ray cannot yet restart an actor whose constructor arguments live in
        # the object store (ray-project/ray#53727); _finish replaces a dead actor itself.
        actor_cls = ray.remote(ImageWorker).options(num_cpus=cpus, max_concurrency=cfg.jobs)
        output = os.path.abspath(cfg.output)
        # The actor's CPUs are shared by its --jobs images in flight, as in a local run.
        threads = threads_per_job(cfg.jobs, cpus)
        self._new_actor = lambda: actor_cls.remote(names, choice.rule, cfg, output, threads, cpus, *self._model_refs)
        self._actors = [self._new_actor() for _ in range(n)]
        self._load = [0] * n
        self._per_actor = 2 * cfg.jobs
        self.window = n * self._per_actor
        log.info(
            "Ray: %d worker%s of %d CPUs, %d images each at a time (cluster: %d CPUs, %d free)",
            n,
            "s" if n > 1 else "",
            cpus,
            cfg.jobs,
            sum(node_cpus),
            free,
        )

        token = secrets.token_hex(8)
        token_file = Path(output) / f"{PROBE_PREFIX}{token}{TMP_SUFFIX}"
        token_file.write_text(token)
        try:
            sample = os.path.abspath(todo[0].src)
            refs = [a.probe.remote(os.path.abspath(cfg.input), sample, token_file.name, token) for a in self._actors]
            _, pending = ray.wait(refs, num_returns=len(refs), timeout=START_TIMEOUT_S)
            if pending:
                raise EngineUnavailable(
                    f"{len(pending)} of {n} Ray workers ({cpus} CPUs each) did not start "
                    f"within {START_TIMEOUT_S:.0f} s (the cluster had {free} free CPUs)"
                )
            mine = code_fingerprint()
            for ref in refs:
                try:
                    info = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    raise EngineUnavailable(f"a Ray worker could not start: {_one_line(exc)}") from None
                if info["problem"]:
                    raise EngineUnavailable(f"the Ray worker on {info['host']} {info['problem']}; {SHARED_FS}")
                if info["code"] != mine:
                    raise EngineUnavailable(
                        f"the Ray worker on {info['host']} runs a different batchsr ({info['where']}) than this "
                        f"driver ({PACKAGE_DIR}); let batchsr start Ray, or pass "
                        f"runtime_env=batchsr.ray_engine.runtime_env() to ray.init"
                    )
        finally:
            token_file.unlink(missing_ok=True)

    # ---- the distributor interface -----------------------------------------------------------------

    def map(self, work: ItemWork, items: Iterable) -> Iterator[tuple]:
        pending: deque[_Pending] = deque()
        for item in items:
            if work.stop.is_set():
                # A signal: nothing more is sent; the images in flight finish (a worker
                # cannot be stopped half-way) and get their rows and records below.
                break
            row = work.ready_row(item)
            if row is not None:
                pending.append(_Pending(item, row=row))
            else:
                job = item[0]
                p = _Pending(item, job=job, key=work.claim(job))  # the key before the worker writes, as locally
                self._submit(p)
                pending.append(p)
            self._harvest(0)
            while pending and (
                len(pending) >= self.window or pending[0].row is not None or pending[0].ref in self._done
            ):
                yield self._finish(work, pending.popleft())
        while pending:
            yield self._finish(work, pending.popleft())

    def _submit(self, p: _Pending) -> None:
        a = self._free_actor()
        # Absolute paths: a worker on another node has another working directory.
        job = dataclasses.replace(p.job, src=Path(os.path.abspath(p.job.src)))
        p.actor, p.tries = self._actors[a], p.tries + 1
        p.ref = p.actor.process.remote(job)
        self._inflight[p.ref] = a
        self._load[a] += 1

    def _harvest(self, timeout: float | None) -> None:
        """Note which calls finished (all ready ones; with ``timeout`` None, wait for at least one)."""
        if not self._inflight:
            return
        refs = list(self._inflight)
        ready, _ = self._ray.wait(refs, num_returns=1 if timeout is None else len(refs), timeout=timeout)
        for ref in ready:
            self._release(ref)
            self._done.add(ref)

    def _release(self, ref) -> None:
        a = self._inflight.pop(ref, None)
        if a is not None:
            self._load[a] -= 1

    def _forget(self, ref) -> None:
        self._release(ref)
        self._done.discard(ref)

    def _replace(self, dead) -> None:
        """Start a new actor in the place of ``dead`` (once, however many of its calls failed)."""
        for a, actor in enumerate(self._actors):
            if actor is dead:
                log.warning("a Ray worker died; starting another (its images are tried once more)")
                self._actors[a] = self._new_actor()

    def _free_actor(self) -> int:
        while True:
            a = min(range(len(self._actors)), key=self._load.__getitem__)
            if self._load[a] < self._per_actor:
                return a
            self._harvest(None)

    def _finish(self, work, p: _Pending) -> tuple:
        if p.row is not None:
            return p.item, p.row

        errors = self._ray.exceptions
        while True:
            try:
                row, stat = self._ray.get(p.ref)
                break
            except errors.RayActorError as exc:  # the worker process died: killed for memory, a lost node
                self._forget(p.ref)
                self._replace(p.actor)
                if p.tries < 2:  # once more, on a live worker: an image that kills it twice is an error
                    self._submit(p)
                    continue
                error = f"the Ray worker died twice while processing it ({_one_line(exc)})"
            except errors.RayError as exc:
                error = f"the Ray worker failed ({_one_line(exc)})"
            row, stat = Row(input="", status=ERROR, scale=work.choice.scale, model=work.choice.label, error=error), None
            break
        self._forget(p.ref)
        # The worker saw absolute paths; the report shows them as the driver was given them.
        row.input = str(p.job.src)
        if row.output:
            row.output = str(Path(self.cfg.output) / p.job.rel)
        if row.status == OK and stat is not None:
            work.record(p.job, p.key, row, stat)
        return p.item, row

    def close(self) -> None:
        ray = self._ray
        for a in self._actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # already gone
                pass
        self._actors = []
        self._inflight.clear()
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
