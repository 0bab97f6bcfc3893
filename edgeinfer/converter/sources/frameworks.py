"""The framework versions the converter supports, and the one-line refusal below them.

Why: the ``convert`` and ``keras`` extras declare ranges (not this project's exact pins,
which live in ``constraints.txt``) so that installing edgeinfer into a training environment
keeps the user's torch / TensorFlow. A range lets an older framework in too; when it lacks
an API the converter calls, the failure would surface deep inside an exporter as an
``unexpected keyword argument``. This module refuses it up front, in one line that names
the installed version and the range. The floors below must equal the extras' lower bounds
in pyproject.toml (a test compares them); each floor's evidence:

- torch 2.6: ``torch.onnx.export(..., dynamo=True, optimize=True, external_data=False,
  dynamic_shapes=...)`` returning an ``ONNXProgram`` (from_torch.export_onnx). ``dynamo=True``
  arrived in 2.5; the ``optimize`` option (the onnxscript pass that folds Conv+BatchNorm,
  which the BatchNorm figures rely on) is the "stable API for PyTorch 2.6" (onnxscript
  PR 1896); PyTorch's docs call the torch.export-based exporter that of "PyTorch 2.6 and
  newer".
- keras 3.6: ``keras.export.ExportArchive.write_out(..., verbose=False)`` (the Keras TFLite
  route); ``verbose`` was added by keras PR 20195, merged after 3.5.0 (3.6.0 has it).
- tensorflow 2.16: the first TensorFlow whose Keras is Keras 3 (release notes of 2.16.1:
  "Keras 3.0 will be the default"); every Keras path here is Keras 3 (``keras.saving``,
  ``keras.export``). TensorFlow is not an extra's dependency (``tensorflow`` and
  ``tensorflow-cpu`` are two distributions of one package; naming either would install a
  second TensorFlow beside the other), so this check is its only guard.

Versions between a floor and this project's pin (constraints.txt) are not tested here.
"""

from __future__ import annotations

import re

from edgeinfer.errors import MissingExtraError

#: module -> (lowest supported version, what to install to get a supported one)
FLOORS: dict[str, tuple[str, str]] = {
    "torch": ("2.6", "pip install 'torch>=2.6'"),
    "keras": ("3.6", "pip install 'keras>=3.6'"),
    "tensorflow": ("2.16", "pip install 'tensorflow>=2.16' (or tensorflow-cpu)"),
}


def version_tuple(version: str) -> tuple[int, ...]:
    """``"2.13.0+cpu"`` -> (2, 13, 0): the release numbers, local labels and suffixes
    (``rc1``, ``.dev``) ignored, so a pre-release of a floor counts as that floor."""
    nums = []
    for part in version.split("+")[0].split("."):
        m = re.match(r"\d+", part)
        if m is None:
            break
        nums.append(int(m.group()))
        if m.end() != len(part):
            break
    return tuple(nums)


def require_version(module: str, installed: str, what: str) -> None:
    """Raise :class:`MissingExtraError` (one line) when ``installed`` is below the floor of
    ``module``; ``what`` says which conversion needed it."""
    floor, fix = FLOORS[module]
    if version_tuple(installed) < version_tuple(floor):
        raise MissingExtraError(f"{what} needs {module}>={floor}; {module} {installed} is "
                                f"installed, below the supported range: {fix}")


def tensorflow_missing(what: str) -> MissingExtraError:
    """TensorFlow absent: no extra installs it (see the module docstring), so the line says
    which distribution to pick instead of naming ``edgeinfer[keras]`` alone."""
    return MissingExtraError(f"{what} needs TensorFlow, which is not installed: "
                             "pip install 'tensorflow-cpu>=2.16' (or 'tensorflow>=2.16' for "
                             "GPU training) and 'edgeinfer[keras]'")
