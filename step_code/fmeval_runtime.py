"""Running fmeval in a process: the judge models it scores with, and a Ray runtime for fmeval's `evaluate()`.

The evaluate step scores in-process (`record_scoring`) and never starts Ray. fmeval's own `evaluate()`
still runs on Ray Data: the reference approach of the benchmarks and the equivalence tests call it.
fmeval never starts Ray itself; left alone, the first `ray.data` call starts it with defaults that
ignore our CPU budget and without our worker set-up. `ray_session()` starts Ray once per process
(idempotent, thread-safe, from a thread of its own: see `_RayOwner`) and shuts it down when the last
user leaves.

Judge models (the BERTScore, Detoxify and ToxiGen models fmeval's algorithms score with) are
installed by `install_judge_models()` in the driver and, through Ray's `worker_process_setup_hook`,
in every worker before it unpickles a transform. A deployment may name extra judge-model hooks in
EVALOPS_JUDGE_MODELS (`module:function`, comma-separated); each returns the judges it provides
("bertscore", "detoxify", "toxigen") so the offline asset check does not ask for their downloads.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from step_code.judge_device import judge_device, place_judges

logger = logging.getLogger(__name__)

JUDGE_MODELS_ENV = "EVALOPS_JUDGE_MODELS"
# fmeval sizes its Ray actor pools from this variable (0 crashes; unset means cpu_count - 1).
PARALLELIZATION_FACTOR_ENV = "PARALLELIZATION_FACTOR"
JUDGE_NAMES = frozenset({"bertscore", "detoxify", "toxigen"})

_state_lock = threading.Lock()
_users = 0
_owner: _RayOwner | None = None
# Hooks installed in this process, and the judges they provide.
_installed: tuple[str, frozenset[str]] | None = None


class JudgeHookError(RuntimeError):
    """EVALOPS_JUDGE_MODELS names something that cannot be imported or called."""


def _hook_specs() -> list[str]:
    return [spec.strip() for spec in os.environ.get(JUDGE_MODELS_ENV, "").split(",") if spec.strip()]


def _load_hook(spec: str) -> Callable[[], Iterable[str]]:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise JudgeHookError(f"{JUDGE_MODELS_ENV}: {spec!r} is not of the form module:function")
    try:
        hook = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise JudgeHookError(f"{JUDGE_MODELS_ENV}: cannot load {spec!r} ({exc})") from None
    if not callable(hook):
        raise JudgeHookError(f"{JUDGE_MODELS_ENV}: {spec!r} is not callable")
    return hook


def defer_bertscore_load() -> None:
    """Make fmeval load the BERTScore metric when it first scores, not when its modules are imported.

    fmeval evaluates `BertscoreHelperModel(...)` as a default argument, so importing any accuracy
    algorithm (or fmeval's reporting) calls `evaluate.load("bertscore")` and, without the cached metric,
    fails before we can say which asset is missing. Deferring it changes no score: the same metric is
    loaded by the same call on first use.
    """
    from fmeval.eval_algorithms.helper_models import helper_model

    cls: Any = helper_model.BertscoreHelperModel
    if getattr(cls, "_evalops_deferred", False):
        return

    def __init__(self: Any, model_type: str) -> None:
        self._model_type = model_type

    def _bertscore(self: Any) -> Any:
        metric = self.__dict__.get("_evalops_metric")
        if metric is None:
            metric = helper_model.hf_evaluate.load("bertscore")
            self.__dict__["_evalops_metric"] = metric
        return metric

    cls.__init__ = __init__
    cls._bertscore = property(_bertscore)
    cls._evalops_deferred = True


def install_judge_models() -> frozenset[str]:
    """Prepare fmeval's judge models in this process; returns the judges that hooks provide locally.

    Runs before any fmeval algorithm module is imported (driver) and at worker start-up (Ray).
    """
    global _installed
    specs = _hook_specs()
    key = ",".join(specs)
    with _state_lock:
        if _installed is not None and _installed[0] == key:
            return _installed[1]
        defer_bertscore_load()
        place_judges(judge_device())
        provided: set[str] = set()
        for spec in specs:
            judges = set(_load_hook(spec)())
            unknown = judges - JUDGE_NAMES
            if unknown:
                raise JudgeHookError(
                    f"{JUDGE_MODELS_ENV}: {spec!r} returned unknown judges {sorted(unknown)} "
                    f"(expected some of {sorted(JUDGE_NAMES)})"
                )
            provided |= judges
        _installed = (key, frozenset(provided))
        return _installed[1]


def setup_worker() -> None:
    """Ray `worker_process_setup_hook`: the same judge models in every worker as in the driver."""
    install_judge_models()


def ray_cpus() -> int:
    # With one CPU a judge-model actor takes the only slot and fmeval's map tasks never run.
    return max(2, os.cpu_count() or 1)


def _init_ray(num_cpus: int, hooks: str) -> None:
    import ray
    import ray.data

    code_root = str(Path(__file__).resolve().parent.parent)
    worker_path = os.pathsep.join(dict.fromkeys([code_root, *(entry for entry in sys.path if entry)]))
    env_vars = {"PYTHONPATH": worker_path, PARALLELIZATION_FACTOR_ENV: os.environ[PARALLELIZATION_FACTOR_ENV]}
    forwarded = (JUDGE_MODELS_ENV, "HF_HOME", "NLTK_DATA", "TORCH_HOME", "HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE")
    for name in (*forwarded, "TRANSFORMERS_OFFLINE"):
        if name in os.environ:
            env_vars[name] = os.environ[name]
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        runtime_env={"worker_process_setup_hook": f"{__name__}.setup_worker", "env_vars": env_vars},
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logger.info(
        "started Ray with %d CPUs, %s=%s", num_cpus, PARALLELIZATION_FACTOR_ENV, env_vars[PARALLELIZATION_FACTOR_ENV]
    )


class _RayOwner:
    """The thread that starts Ray and lives until it has shut Ray down.

    Ray starts its GCS and raylet with PR_SET_PDEATHSIG, and Linux sends that signal when the *thread*
    that spawned them exits, not the process. Started from an evaluate step running in a worker thread
    of the local runner, Ray would be killed as soon as that step returned, under the feet of the
    steps still scoring. A dedicated thread outlives every user.
    """

    def __init__(self, num_cpus: int, hooks: str) -> None:
        self.hooks = hooks
        self._num_cpus = num_cpus
        self._started = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="evalops-ray-owner", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import ray

        try:
            _init_ray(self._num_cpus, self.hooks)
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._stop.wait()
        ray.shutdown()


def _start_ray() -> None:
    global _owner
    import ray

    num_cpus = ray_cpus()
    # One actor per CPU but one, leaving a CPU for a judge-model actor.
    os.environ.setdefault(PARALLELIZATION_FACTOR_ENV, str(max(1, num_cpus - 1)))
    hooks = ",".join(_hook_specs())
    if _owner is not None:
        if _owner.hooks == hooks:
            return
        # Only reached with no other user: workers must be restarted to install other judge hooks.
        _stop_ray()
    if ray.is_initialized():
        logger.warning("Ray was started elsewhere in this process; its workers may lack %s", JUDGE_MODELS_ENV)
        return
    owner = _RayOwner(num_cpus, hooks)
    owner.start()
    _owner = owner


def _stop_ray() -> None:
    global _owner
    if _owner is not None:
        _owner.stop()
    _owner = None


@contextmanager
def ray_session() -> Iterator[None]:
    """Keep Ray up while any evaluate step of this process needs it; shut it down after the last one."""
    global _users
    install_judge_models()
    with _state_lock:
        _users += 1
    try:
        with _state_lock:
            if _users == 1 or _owner is None:
                _start_ray()
        yield
    finally:
        with _state_lock:
            _users -= 1
            if _users == 0:
                _stop_ray()
