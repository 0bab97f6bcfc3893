"""The field monitor: a deployed model's accuracy estimated without labels, drift per
signal, an alarm with false alarms under control, and the likely cause (issue 27).

numpy + OpenCV only: it runs wherever the runtime runs. See monitor.py for the use.
"""

from edgeinfer.runtime.monitor.estimate import DEFAULT_ESTIMATOR, ESTIMATORS, estimate_accuracy
from edgeinfer.runtime.monitor.frame_stats import FRAME_SIGNALS, frame_stats, frames_stats
from edgeinfer.runtime.monitor.monitor import Monitor, MonitorReport
from edgeinfer.runtime.monitor.profile import ReferenceProfile, build_profile, robustness_entry

__all__ = ["DEFAULT_ESTIMATOR", "ESTIMATORS", "FRAME_SIGNALS", "Monitor", "MonitorReport",
           "ReferenceProfile", "build_profile", "estimate_accuracy", "frame_stats",
           "frames_stats", "robustness_entry"]
