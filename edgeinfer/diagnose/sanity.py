"""Sanity before PASS: a model at chance on the user's own labels is not a success.

The parity gate proves the artifact equals the framework under a spec; both can be equally
useless. Issue 25's case: a 32-pixel digits CNN converted with a 224-pixel processor
config passed at 13.6% on 397 labelled frames (10 classes). That is just OUTSIDE the 95%
binomial interval of 1/10 on 397 frames ([7.1%, 13.1%]), so "within the interval of
1/K" alone would have let it through, and with more frames it would shrink further while
the model stays useless. The rule here asks how much better than chance the model could
at best be, given the frames:

* chance is what a prediction that ignores the frame would score: ``sum_c p_pred(c) *
  p_label(c)`` (Cohen's expected agreement; 1/K for balanced labels, and the frequency of
  the one class a model stuck on one output always names);
* the model's accuracy is read at the top of its 95% Wilson interval, and its excess over
  chance as a share of what is left above chance (Cohen's kappa at that upper bound);
* a model that names one class for every frame, missing at least :data:`MIN_OTHERS`
  frames of other classes, is at chance whatever the interval says;
* below :data:`KAPPA_MIN` (0.2, the bottom of "fair" agreement on Landis and Koch's scale)
  the model is at chance under this spec: 12.5% on 64 frames reads 0.14; a weak but real
  model at 30% on 64 frames reads 0.35 and passes. Too few frames to tell (the upper bound
  stays high) never refuses, nor do labels of one class (nothing to tell apart).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeinfer.interval import wilson

KAPPA_MIN = 0.2
MIN_OTHERS = 10  # frames of other classes a one-class model must miss to be 'stuck'


@dataclass(frozen=True)
class Chance:
    """How far above chance a model's predictions are on labelled frames."""

    accuracy: float
    n: int
    chance: float  # the accuracy of a prediction independent of the frame
    upper: float  # 95% Wilson upper bound of the accuracy
    kappa_upper: float  # (upper - chance) / (1 - chance)

    one_class: bool = False  # every prediction names the same class

    @property
    def at_chance(self) -> bool:
        return self.one_class or self.kappa_upper < KAPPA_MIN

    def summary(self) -> str:
        if self.one_class:
            return (f"every one of {self.n} labelled frames gets the same class, right on "
                    f"{self.accuracy:.1%}: the model does not tell the classes apart")
        return (f"accuracy {self.accuracy:.1%} on {self.n} labelled frames, chance "
                f"{self.chance:.1%}: at best {self.kappa_upper:.2f} of the way from chance to "
                f"perfect (95% upper bound; below {KAPPA_MIN} is chance)")

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "n": self.n, "chance": self.chance,
                "upper": self.upper, "kappa_upper": self.kappa_upper,
                "kappa_min": KAPPA_MIN, "one_class": self.one_class,
                "at_chance": self.at_chance}


def chance(pred: np.ndarray, labels: np.ndarray, classes: int) -> Chance | None:
    """The chance check of top-1 predictions ``pred`` against ``labels`` (``classes``
    outputs); None when the labels hold fewer than two classes: a model right on frames of
    one class cannot be told from one stuck on that class, and refusing it would be a
    false refusal."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    n = len(labels)
    if len(np.unique(labels)) < 2:
        return None
    # pred < classes (an argmax over the model's outputs); a label past them still counts
    k = max(classes, int(labels.max()) + 1)
    p_pred = np.bincount(pred, minlength=k) / n
    p_label = np.bincount(labels, minlength=k) / n
    expected = float(p_pred @ p_label)  # < 1: the labels hold two classes
    correct = int((pred == labels).sum())
    upper = wilson(correct, n)[1]
    kappa = (upper - expected) / (1 - expected)
    # One predicted class for labels of several: kappa is exactly 0, whatever the interval
    # says (the upper bound alone lets a stuck model through on skewed labels: 48 of 66).
    # Only with enough frames of the other classes, all missed, to be sure: 63 cats and a
    # dog all called "cat" is a good model as often as a stuck one.
    stuck = len(np.unique(pred)) == 1 and int((labels != pred[0]).sum()) >= MIN_OTHERS
    return Chance(correct / n, n, expected, upper, float(kappa), stuck)
