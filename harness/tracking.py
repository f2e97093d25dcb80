"""MLflow tracking: a comparison is a parent run, each arm a nested run; a gate result is a run.

The store stays the record: a compare stores its comparison first and logs it after, so a tracking
server that is down loses nothing (`harness compare` says so in one line and exits 2). mlflow is an
optional extra, imported only when tracking is on.

What goes where:
- parent run (one per comparison): tags task, data hash, model, verdict kind and sentence; params
  the decision's assumptions; artifacts the report as JSON and as HTML with its plots.
- nested run (one per arm): the arm's axes, flattened, as params; quality with its interval, every
  metric (the lenient `contains` beside the strict one), latency, throughput, tokens, cost and
  forgetting as metrics. An arm that trains is the active run while it trains, so the Trainer's own
  MLflow callback (`report_to=["mlflow"]`) logs its loss curve into it, step by step.
- a run already logged (found by the tag `harness.run_key`, the store's key of the run, and the time
  the store made it) is not logged again: a later comparison that reuses it names it in a tag
  `harness.reused.<arm>` on its parent instead.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness.config import Task
from harness.errors import HarnessError

RUN_KEY = "harness.run_key"
RUN_MADE = "harness.run_created_at"


class TrackingError(HarnessError):
    """The tracking server could not be reached or refused a request. `report`: the comparison (or
    gate result), already stored, when the failure came after it."""

    def __init__(self, where: str, message: str, report=None):
        super().__init__(where, message)
        self.report = report


@dataclass(frozen=True)
class Settings:
    uri: str | None  # None: MLflow's own default
    experiment: str
    where: str  # what set the URI, for error lines: --mlflow, the task's field, or the env variable


def settings(config: Task, uri: str | None, task_file: str) -> Settings | None:
    """Whether this command logs to MLflow, and where; None: it does not. On with `--mlflow URI`,
    the task's `tracking.mlflow`, or $MLFLOW_TRACKING_URI. Checks that mlflow is installed, so a
    missing extra fails before any work starts."""
    section = config.tracking.mlflow
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        where = "--mlflow"
    elif section is not None and section.tracking_uri:
        uri, where = section.tracking_uri, f"{task_file}: tracking.mlflow.tracking_uri"
    elif env:
        uri, where = env, "MLFLOW_TRACKING_URI"
    elif section is not None:
        uri, where = None, f"{task_file}: tracking.mlflow"  # MLflow's own default store
    else:
        return None
    from importlib.util import find_spec

    if find_spec("mlflow") is None:
        raise HarnessError(where, "MLflow tracking needs mlflow: pip install 'ft-harness[mlflow]'")
    experiment = ((section.experiment if section is not None else None)
                  or os.environ.get("MLFLOW_EXPERIMENT_NAME") or config.name)
    return Settings(uri=uri, experiment=experiment, where=where)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys: {"weights": {"lora": {"r": 8}}} -> {"weights.lora.r": 8}."""
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value} if prefix else {}


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 500 else text[:497] + "..."


def arm_metrics(row) -> dict[str, float]:
    """An arm's row (harness.results.ArmResult) as MLflow metrics."""
    m: dict[str, float | None] = {
        "quality": row.quality.value, "quality_ci_low": row.quality.ci_low, "quality_ci_high": row.quality.ci_high,
        "n_examples": row.n_examples,
        "latency_p50_ms": row.latency_ms.p50, "latency_p95_ms": row.latency_ms.p95,
        "latency_mean_ms": row.latency_ms.mean, "throughput_eps": row.throughput_eps,
        "tokens_prompt_mean": row.tokens.prompt_mean, "tokens_output_mean": row.tokens.output_mean,
        "tokens_cached_mean": row.tokens.cached_mean, "prepare_s": row.prepare_s,
    }
    for name, interval in row.metrics.items():  # the strict metric and the lenient `contains` beside it
        m.update({name: interval.value, f"{name}_ci_low": interval.ci_low, f"{name}_ci_high": interval.ci_high})
    if row.cost is not None:
        m.update({"cost_per_request_usd": row.cost.per_request_usd, "cost_monthly_usd": row.cost.monthly_usd,
                  "cost_one_time_usd": row.cost.one_time_usd, "cost_one_time_s": row.cost.one_time_s})
    f = row.forgetting
    if f is not None:
        m.update({"forgetting_delta_loss": f.delta_loss, "forgetting_delta_loss_ci_low": f.delta_loss_ci_low,
                  "forgetting_delta_loss_ci_high": f.delta_loss_ci_high,
                  "forgetting_delta_qa_contains": f.delta_qa_contains})
    if row.training is not None:
        t = row.training
        m.update({"training_wall_s": t.wall_s, "training_steps": t.steps, "training_final_loss": t.final_loss,
                  "training_best_eval_loss": t.best_eval_loss})
    if row.retrieval is not None:
        m.update({"retrieval_recall_at_k": row.retrieval.recall_at_k, "retrieval_mrr": row.retrieval.mrr})
    return {k: float(v) for k, v in m.items() if v is not None}


def _reachable(uri: str, where: str) -> None:
    """An HTTP tracking server answers its health check within seconds (MLflow's own client would
    retry for minutes first). Other URIs (a folder, a database) are checked by their first use."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5):
            return
    except urllib.error.HTTPError as e:
        if e.code < 500:  # a server that has no /health route (a proxy, a managed service) still answers
            return
        problem = f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        problem = str(getattr(e, "reason", e))
    raise TrackingError(where, f"MLflow server {uri} is not reachable ({problem})")


class Tracker:
    """One command's MLflow runs. Every call that talks to the server raises TrackingError on failure."""

    def __init__(self, s: Settings):
        import mlflow
        from mlflow import MlflowClient

        self.settings = s
        self.mlflow = mlflow
        # MLflow prints two links each time a run ends, in the middle of the table; we print one.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # MLflow's global URI (and the environment variable it sets from it) is this command's only:
        # `close` puts back what was there, so a later command in the same process is not tracked.
        self._previous = (mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None,
                          os.environ.get("MLFLOW_TRACKING_URI"))
        try:
            with self._talking():
                if s.uri is None:
                    self.settings = s = Settings(mlflow.get_tracking_uri(), s.experiment, s.where)
                _reachable(s.uri, s.where)
                mlflow.set_tracking_uri(s.uri)  # the Trainer's callback logs through the same client
                self.client = MlflowClient(s.uri)
                found = self.client.get_experiment_by_name(s.experiment)
                # Shown as model training in MLflow's UI (which otherwise opens a new experiment on its GenAI views).
                self.experiment_id = found.experiment_id if found else self.client.create_experiment(
                    s.experiment, tags={"mlflow.experimentKind": "custom_model_development"})
        except BaseException:
            self.close()
            raise
        self.parent: str | None = None
        self.children: dict[str, str] = {}  # arm name -> its nested run, made while this command ran it

    def close(self) -> None:
        uri, env = self._previous
        self.mlflow.set_tracking_uri(uri)  # None: unset, and MLflow removes the variable it set
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env
        else:
            os.environ.pop("MLFLOW_TRACKING_URI", None)

    @contextmanager
    def _talking(self):
        from mlflow.exceptions import MlflowException

        try:
            yield
        except (MlflowException, OSError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise TrackingError(self.settings.where, f"MLflow at {self.settings.uri} failed: {first[:300]}") from None

    def url(self, run_id: str) -> str:
        """The run's page in the MLflow UI (a server), or its id (a local store)."""
        base = self.settings.uri.rstrip("/")
        if base.startswith(("http://", "https://")):
            return f"{base}/#/experiments/{self.experiment_id}/runs/{run_id}"
        return f"run {run_id} in {base}"

    # A comparison -----------------------------------------------------------------------------

    def start_comparison(self, task: str, tags: dict[str, str]) -> None:
        with self._talking():
            run = self.client.create_run(self.experiment_id, run_name=task,
                                         tags={"harness.kind": "comparison", "harness.task": task, **tags})
        self.parent = run.info.run_id

    @contextmanager
    def arm(self, name: str):
        """The arm's nested run, active while the arm prepares: a Trainer that reports to mlflow logs its
        loss curve into it."""
        if self.parent is None:
            yield
            return
        with self._talking():
            run = self.client.create_run(self.experiment_id, run_name=name,
                                         tags={"mlflow.parentRunId": self.parent, "harness.arm": name})
        self.children[name] = run.info.run_id
        with self._talking(), self.mlflow.start_run(run_id=run.info.run_id):
            try:
                yield
            finally:
                self.mlflow.flush_async_logging()

    def _logged(self, key: str, made: str) -> str | None:
        """The MLflow run that already holds this store run, if any."""
        runs = self.client.search_runs([self.experiment_id], max_results=1,
                                       filter_string=f"tags.`{RUN_KEY}` = '{key}' and tags.`{RUN_MADE}` = '{made}'")
        return runs[0].info.run_id if runs else None

    def log_comparison(self, report, store) -> dict[str, str]:
        """Log the stored comparison: the parent's tags and artifacts, and each arm not logged before.
        Returns arm -> the MLflow run that holds it."""
        from harness.report import figures, render_html

        rec = report.recommendation
        held = {}
        with self._talking():
            if self.parent is None:
                self.start_comparison(report.task, {})
            parent = self.parent
            self.client.log_batch(parent, tags=_tags({
                "harness.comparison_id": str(report.comparison_id), "harness.data_hash": report.data_hash,
                "harness.model": report.model, "harness.task_type": report.task_type,
                "harness.verdict.kind": rec.kind if rec else "none",
                "harness.verdict": rec.verdict if rec else "", "mlflow.note.content": rec.verdict if rec else "",
            }), params=_params({"n_examples": report.n_examples, "metric": report.comparisons.metric,
                                **flatten(report.assumptions.decision.model_dump(mode="json"), "decision"),
                                **flatten(report.assumptions.cost.model_dump(mode="json"), "cost")}))
            for row in report.strategies:
                stored = store.run(row.run_id)
                key, made = stored["key"], f"{stored['created_at']:.6f}"
                run_id = self.children.get(row.name)
                if run_id is None:
                    earlier = self._logged(key, made)
                    if earlier is not None:  # logged by an earlier comparison: named, not copied
                        self.client.set_tag(parent, f"harness.reused.{row.name}", earlier)
                        held[row.name] = earlier
                        continue
                    run_id = self.client.create_run(self.experiment_id, run_name=row.name,
                                                    tags={"mlflow.parentRunId": parent, "harness.arm": row.name}
                                                    ).info.run_id
                params = {"model": row.model, "weights": row.weights, "prompt_format": row.prompt_format,
                          "scoring": row.scoring, **flatten(row.axes, "axes")}
                self.client.log_batch(run_id, metrics=_metrics(arm_metrics(row)), params=_params(params),
                                      tags=_tags({RUN_KEY: key, RUN_MADE: made, "harness.store_run_id": str(row.run_id),
                                                  "harness.made_of": row.made_of,
                                                  "harness.added_by_harness": str(row.added_by_harness).lower(),
                                                  "harness.reused_from_store": str(row.reused).lower()}))
                self.client.set_terminated(run_id)
                held[row.name] = run_id
            self.client.log_text(parent, report.model_dump_json(indent=2), "report.json")
            self.client.log_text(parent, render_html(report, figures(report)), "report.html")
            self.client.set_terminated(parent)
        return held

    def fail(self) -> None:
        """The command failed before its comparison was stored: its runs say so."""
        if self.parent is None:
            return
        try:
            for run_id in [*self.children.values(), self.parent]:
                self.client.set_terminated(run_id, status="FAILED")
        except Exception:  # the command's own error is the one to report
            pass

    # A gate -----------------------------------------------------------------------------------

    def log_gate(self, result) -> str:
        with self._talking():
            run = self.client.create_run(self.experiment_id, run_name=f"gate {result.checkpoint}", tags=_tags_dict({
                "harness.kind": "gate", "harness.task": result.task, "harness.checkpoint": result.checkpoint,
                "harness.gate.outcome": result.outcome, "harness.gate_id": str(result.gate_id),
                "harness.baseline": result.baseline.label, "mlflow.note.content": f"gate {result.outcome}",
                **{f"harness.rule.{r.name}": r.outcome for r in result.rules}}))
            run_id = run.info.run_id
            c, b, d = result.candidate, result.baseline, result.difference
            metrics = {"candidate_quality": c.quality.value, "candidate_quality_ci_low": c.quality.ci_low,
                       "candidate_quality_ci_high": c.quality.ci_high, "baseline_quality": b.quality.value,
                       "difference": d.diff, "difference_ci_low": d.ci_low, "difference_ci_high": d.ci_high,
                       "latency_p95_ms": c.latency_p95_ms, "forgetting_delta_loss": c.forgetting_delta_loss,
                       "passed": float(result.passed),
                       **{f"rule_{r.name}_observed": r.observed for r in result.rules if r.observed is not None}}
            self.client.log_batch(run_id, metrics=_metrics(metrics), params=_params(
                {"metric": result.metric, **{f"rule.{r.name}": r.threshold for r in result.rules}}))
            self.client.log_text(run_id, result.model_dump_json(indent=2), "gate.json")
            self.client.set_terminated(run_id)
        return run_id


def trainer_report_to() -> list[str] | str:
    """The Trainer's `report_to`: mlflow while an arm's run is active (harness compare with tracking
    on), so the loss curve lands in the arm's run; nothing otherwise."""
    import sys

    mlflow = sys.modules.get("mlflow")  # imported only when tracking is on
    return ["mlflow"] if mlflow is not None and mlflow.active_run() is not None else "none"


def _tags_dict(tags: dict[str, Any]) -> dict[str, str]:
    return {k: str(v)[:5000] for k, v in tags.items() if v is not None}


def _tags(tags: dict[str, Any]):
    from mlflow.entities import RunTag

    return [RunTag(k, v) for k, v in _tags_dict(tags).items()]


def _params(params: dict[str, Any]):
    from mlflow.entities import Param

    return [Param(k, _param(v)) for k, v in params.items() if v is not None]


def _metrics(metrics: dict[str, float]):
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None]
