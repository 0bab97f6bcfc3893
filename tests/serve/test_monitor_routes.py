"""The field monitor behind a real server on 127.0.0.1: fed by every inference, on
/metrics as gauges and as JSON at GET /v2/models/NAME/monitor; a model without a profile
answers a clear 404."""

from __future__ import annotations

import re

import httpx
import numpy as np

from edgeinfer.data.datasets import load_fashion_mnist
from edgeinfer.serve.config import ServeConfig
from edgeinfer.serve.server import serve_in_thread
from tests.serve.conftest import encode


def _frames(start: int, n: int, scale: float = 1.0) -> list[bytes]:
    im, _ = load_fashion_mnist("test")
    return [encode((im[i] * scale).astype(np.uint8), ".png") for i in range(start, start + n)]


def test_monitor_json_and_gauges_follow_a_dark_shift(fashion_artifact) -> None:
    with (serve_in_thread([fashion_artifact], ServeConfig(port=0)) as url,
          httpx.Client(timeout=30) as c):
        for body in _frames(3000, 150):
            assert c.post(f"{url}/predict", content=body).status_code == 200
        healthy = c.get(f"{url}/v2/models/fashion/monitor").json()
        assert healthy["name"] == "fashion" and healthy["frames"] == 150
        assert healthy["alarm"] is False
        assert abs(healthy["estimated_accuracy"] - healthy["reference_accuracy"]) < 0.08
        # the artifact's feature moments come along from the same session call
        assert 0 <= healthy["drift"]["features"] < 1
        for body in _frames(3150, 400, scale=0.25):
            c.post(f"{url}/predict", content=body)
        dark = c.get(f"{url}/v2/models/fashion/monitor").json()
        assert dark["alarm"] is True
        assert "darker" in dark["cause"] or "darkness alone" in dark["cause"]
        text = c.get(f"{url}/metrics").text
    assert 'edgeinfer_monitor_alarm{model="fashion"} 1.0' in text
    assert 'edgeinfer_monitor_frames{model="fashion"} 550.0' in text
    est = float(re.search(r'edgeinfer_monitor_estimated_accuracy\{model="fashion"\} (\S+)',
                          text).group(1))
    assert est == dark["estimated_accuracy"] or abs(est - dark["estimated_accuracy"]) < 0.05
    assert re.search(r'edgeinfer_monitor_drift\{model="fashion",signal="brightness"\} -\d', text)
    feats = float(re.search(r'edgeinfer_monitor_drift\{model="fashion",signal="features"\} '
                            r'(\S+)', text).group(1))
    assert feats > healthy["drift"]["features"]


def test_no_monitor_is_a_clear_404(fashion_artifact) -> None:
    with serve_in_thread([fashion_artifact], ServeConfig(port=0, monitor=False)) as url:
        r = httpx.get(f"{url}/v2/models/fashion/monitor", timeout=10)
        missing = httpx.get(f"{url}/v2/models/nope/monitor", timeout=10)
        text = httpx.get(f"{url}/metrics", timeout=10).text
    assert r.status_code == 404 and "no field monitor" in r.json()["error"]
    assert missing.status_code == 404 and "unknown model" in missing.json()["error"]
    assert "edgeinfer_monitor_frames{" not in text
