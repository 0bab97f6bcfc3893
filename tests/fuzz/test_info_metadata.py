"""``info`` on an artifact whose nested metadata has the wrong type: one line, exit 2.

The top-level metadata types are checked where they are parsed (edgeinfer.artifact); a
nested value of the wrong type (a string where the parity agreement number belongs) made
``info`` print half a report and then a ValueError traceback.
"""

from __future__ import annotations

import json

import onnx
import pytest

from edgeinfer.cli import main


def _with_parity(src, dst, **changes) -> None:
    m = onnx.load(str(src))
    for prop in m.metadata_props:
        if prop.key == "edgeinfer.parity":
            prop.value = json.dumps(json.loads(prop.value) | changes)
    onnx.save(m, str(dst))


@pytest.mark.parametrize("changes", [{"top1_agreement": "high"}, {"top1_ci95": 0.5},
                                     {"n": {"frames": 3}, "top1_ci95": ["a", "b"]}])
def test_nested_metadata_of_the_wrong_type_is_one_line(fashion_artifact, tmp_path, capsys,
                                                        changes):
    bad = tmp_path / "bad.onnx"
    _with_parity(fashion_artifact, bad, **changes)
    rc = main(["info", str(bad)])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and "metadata is malformed" in err


def test_intact_artifact_still_reports(fashion_artifact, capsys):
    assert main(["info", str(fashion_artifact)]) == 0
    assert "parity:" in capsys.readouterr().out
