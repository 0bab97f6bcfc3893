"""The long fuzz run of `edgeinfer serve` on loopback (a script, not a unit test).

    python tools/serve_fuzz.py --artifact fashion.onnx [--examples 3000] [--out docs/serve]

Sends hypothesis-generated requests to a real server on 127.0.0.1 (the suite's two
strategies from tests/serve/test_fuzz.py: malformed protocol requests, and the hostile
ones — deep nesting, numbers past Python's 4300-digit limit, other scripts' digits where
an integer is expected), counts the status codes and writes docs/serve/fuzz.{json,md}.
The run is bounded by ``--examples`` per strategy and ``--max-seconds``; it fails (exit 1)
on any response >= 500. The suite runs a derandomized sample of the same strategies.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeinfer.serve.config import ServeConfig  # noqa: E402
from edgeinfer.serve.server import serve_in_thread  # noqa: E402
from tests.serve.conftest import encode  # noqa: E402
from tests.serve.test_fuzz import hostile, requests  # noqa: E402


def cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text()
    return sorted(set(re.findall(r"\b(avx2|avx512f|avx512_vnni|avx_vnni)\b", text)))


def run(url: str, strategy, examples: int, deadline: float, seen: dict[str, dict[int, int]],
        key: str, failures: list[dict]) -> None:
    counts = seen.setdefault(key, {})

    with httpx.Client(base_url=url, timeout=30) as client:

        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def check(req) -> None:
            if time.monotonic() > deadline:
                return
            path, body, headers = req
            r = client.post(path, content=body, headers=headers)
            counts[r.status_code] = counts.get(r.status_code, 0) + 1
            if r.status_code >= 500 and len(failures) < 20:
                failures.append({"path": path[:200], "body": body[:200].decode("latin-1"),
                                 "status": r.status_code, "response": r.text[:300]})

        check()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", required=True, help="the fashion .onnx artifact")
    ap.add_argument("--examples", type=int, default=3000, help="requests per strategy")
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("--out", default=str(REPO / "docs" / "serve"))
    args = ap.parse_args()
    import cv2

    from edgeinfer.data.datasets import load_fashion_mnist

    img = load_fashion_mnist("test")[0][0]
    jpeg = encode(cv2.cvtColor(cv2.resize(img, (56, 56)), cv2.COLOR_GRAY2BGR))
    seen: dict[str, dict[int, int]] = {}
    failures: list[dict] = []
    t0 = time.monotonic()
    deadline = t0 + args.max_seconds
    with serve_in_thread([args.artifact], ServeConfig(port=0)) as url:
        run(url, requests(jpeg), args.examples, deadline, seen, "protocol", failures)
        run(url, hostile(), args.examples, deadline, seen, "hostile", failures)
        alive = httpx.get(f"{url}/v2/health/ready").status_code == 200
    total = {}
    for counts in seen.values():
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    doc = {"requests": sum(total.values()), "seconds": round(time.monotonic() - t0, 1),
           "status": {str(k): v for k, v in sorted(total.items())},
           "by_strategy": {s: {str(k): v for k, v in sorted(c.items())} for s, c in seen.items()},
           "server_errors": sum(v for k, v in total.items() if k >= 500),
           "ready_after": alive, "failures": failures, "cpu_flags": cpu_flags(),
           "load_average": [round(v, 2) for v in os.getloadavg()]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps(doc, indent=2) + "\n")
    rows = "\n".join(f"| {k} | {v} |" for k, v in doc["status"].items())
    (out / "fuzz.md").write_text(
        f"# Fuzz run of the server ({doc['requests']} requests, {doc['seconds']} s)\n\n"
        f"`python tools/serve_fuzz.py --artifact fashion.onnx --examples {args.examples}`: "
        "hypothesis strategies from tests/serve/test_fuzz.py (malformed protocol requests; deep "
        "nesting, numbers past 4300 digits, odd Unicode digits in query and headers) against a "
        "real server on 127.0.0.1.\n\n| status | responses |\n|---|---|\n"
        f"{rows}\n\nResponses >= 500: **{doc['server_errors']}**; ready afterwards: "
        f"{alive}. By strategy: {json.dumps(doc['by_strategy'])}. CPU flags "
        f"{', '.join(doc['cpu_flags'])}; load average {doc['load_average']}.\n")
    print(json.dumps({k: doc[k] for k in ("requests", "status", "server_errors")}))
    return 1 if doc["server_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
