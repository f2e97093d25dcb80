"""Learning curves read as the question they answer: from how many labelled examples does
fine-tuning overtake in-context learning? One definition, used by the verdict's reasons, the
report's plot and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass

from harness.results import Curve, CurvePoint
from harness.verdict import findings


def plotted_curves(curves: list[Curve]) -> list[Curve]:
    """The curves drawn against labelled train examples: those with that number at every point (a
    student's are its teacher's answers)."""
    # A curve over a parameter that does not set the number of labelled examples has no place on
    # this axis; it stays in the table.
    return [c for c in curves if all(p.labelled_examples is not None for p in c.points)]


@dataclass(frozen=True)
class Overtake:
    """The first point of a fine-tuning curve above the best in-context point (see `overtake`)."""
    curve: Curve
    point: CurvePoint
    best_curve: Curve
    best: CurvePoint
    # False: above on the point estimate only, the two intervals overlap.
    clear: bool

    @property
    def labelled_examples(self) -> int:
        return self.point.labelled_examples

    def label(self) -> str:
        return (f"{self.curve.strategy} overtakes in-context learning at {self.labelled_examples:,}"
                + ("" if self.clear else " (point estimate only)"))


def axis_title(curves: list[Curve]) -> str:
    """The plotted curves' x axis."""
    return "labelled train examples" + (" (a student's: its teacher's answers)" if any(c.labels_by for c in curves)
                                        else "")


def gold(curves: list[Curve]) -> list[Curve]:
    """The curves over gold labels: a student's counts its teacher's answers, which answer another
    question (how many of them it needs), not how many labels fine-tuning needs."""
    return [c for c in curves if c.labels_by is None]


def _best_in_context(curves: list[Curve], metric: str) -> tuple[Curve, CurvePoint] | None:
    points = [(c, p) for c in curves if not c.fine_tuning for p in c.points]
    return max(points, key=lambda cp: cp[1].metrics[metric].value, default=None)


def overtake(curves: list[Curve], metric: str) -> Overtake | None:
    """Where fine-tuning overtakes in-context learning on `curves` as plotted (`plotted_curves`:
    every point has its number of labelled examples).

    The fewest labelled examples at which a fine-tuning curve's point beats the best in-context
    point: the highest `metric` on any in-context curve, at any number of demonstrations, because
    demonstrations cost every request and more of them do not always help. A point beats it clearly
    when its 95% interval's lower bound is above the best in-context point's upper bound; the curves'
    runs are not paired on examples, so overlapping intervals show no difference. Without a clear
    win, the first point above on its estimate alone is returned with `clear=False`. None when there
    is no fine-tuning or no in-context curve, or no fine-tuning point is above even on its estimate."""
    curves = gold(curves)
    found = _best_in_context(curves, metric)
    if found is None:
        return None
    best_curve, best = found
    tuned = sorted(((c, p) for c in curves if c.fine_tuning for p in c.points), key=lambda cp: cp[1].labelled_examples)
    clear = [(c, p) for c, p in tuned if p.metrics[metric].ci_low > best.metrics[metric].ci_high]
    above = [(c, p) for c, p in tuned if p.metrics[metric].value > best.metrics[metric].value]
    if not above:
        return None
    curve, point = (clear or above)[0]
    return Overtake(curve=curve, point=point, best_curve=best_curve, best=best, clear=bool(clear))


def _point(point: CurvePoint, metric: str) -> findings.PointQuality:
    q = point.metrics[metric]
    return findings.PointQuality(value=point.value, labelled_examples=point.labelled_examples, quality=q.value,
                                 ci_low=q.ci_low, ci_high=q.ci_high)


def overtake_finding(curves: list[Curve], metric: str) -> findings.Overtake:
    """`overtake(curves, metric)` as a finding of the verdict, which says why when there is no
    overtaking point."""
    tuned = [c for c in curves if c.fine_tuning]
    found = _best_in_context(curves, metric)
    if not tuned:
        return findings.Overtake(metric=metric, outcome="no_fine_tuning_curve")
    if found is None:
        return findings.Overtake(metric=metric, outcome="no_in_context_curve")
    best_curve, best = found
    against = {"best_curve": best_curve.strategy, "best_param": best_curve.param, "best": _point(best, metric)}
    over = overtake(curves, metric)
    if over is None:
        return findings.Overtake(metric=metric, outcome="never", **against,
                                 most_labelled=max(p.labelled_examples for c in tuned for p in c.points))
    return findings.Overtake(metric=metric, outcome="overtakes", **against, curve=over.curve.strategy,
                             param=over.curve.param, point=_point(over.point, metric), clear=over.clear)
