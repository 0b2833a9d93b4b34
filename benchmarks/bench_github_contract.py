"""What holding the GitHub stand-in to GitHub's OpenAPI description costs.

1. Building the validator: loading @octokit/openapi's api.github.com description,
   trimming it to the operations the fake serves and building openapi-core's
   validator over it (tests/openapi_support.contract), in a fresh process. With
   ``--full``, the baseline is building the validator over the whole description.
2. Per request: a PyGithub workload (read the repository, list pull requests, read
   one, post and edit a comment, list comments) against tests/github_fake.py, with
   its request and response validation on, against the same fake with both checks
   switched off on the instance (the baseline). Prints ms per request and the ratio.

Run from the repository root, after `.ci/run` has installed the description:
    .venv/bin/python benchmarks/bench_github_contract.py [--rounds 30] [--full]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUILD = """
import time
t = time.perf_counter()
from tests.openapi_support import contract
c = contract()
print(c.load_seconds, c.build_seconds, time.perf_counter() - t)
"""
FULL = """
import json, time
from openapi_core import OpenAPI
from tests.openapi_support import description_path
t = time.perf_counter()
OpenAPI.from_dict(json.loads(description_path().read_text()))
print(time.perf_counter() - t)
"""


def fresh(code: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return [float(x) for x in out.stdout.split()]


def workload(rounds: int, validate: bool) -> float:
    """Seconds per request over ``rounds`` rounds of the workload."""
    from github import Auth, Github

    from tests.github_fake import FakeGitHub

    with FakeGitHub(token="bench-token") as fake:
        if not validate:
            fake.check_request = lambda *a, **k: None  # type: ignore[method-assign]
            fake.check_response = lambda *a, **k: None  # type: ignore[method-assign]
        number = fake.open_pull("feature", "main")["number"]
        for i in range(20):
            fake.add_comment(number, f"remark {i}")
        gh = Github(base_url=fake.api_url, auth=Auth.Token("bench-token"), retry=None,
                    seconds_between_requests=0, seconds_between_writes=0)
        started = time.perf_counter()
        for _ in range(rounds):
            repo = gh.get_repo(fake.full_name)
            list(repo.get_pulls(state="open", head=f"{fake.owner}:feature"))
            pr = repo.get_pull(number)
            comment = pr.create_issue_comment("report")
            comment.edit("report, edited")
            list(pr.get_issue_comments())
        elapsed = time.perf_counter() - started
        count = len(fake.requests)
    return elapsed / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--full", action="store_true", help="also build over the whole description (slow)")
    args = parser.parse_args()

    builds = [fresh(BUILD) for _ in range(3)]
    load = statistics.median(b[0] for b in builds)
    build = statistics.median(b[1] for b in builds)
    total = statistics.median(b[2] for b in builds)
    print(f"validator, trimmed description (median of 3 fresh processes): load+trim {load:.2f} s, "
          f"build {build:.2f} s, first use incl. imports {total:.2f} s")
    if args.full:
        full = fresh(FULL)[0]
        print(f"baseline, whole description: load+build {full:.1f} s  (ratio {full / (load + build):.0f}x)")

    workload(3, True)  # warm: the contract is built, imports done
    off = statistics.median(workload(args.rounds, False) for _ in range(3))
    on = statistics.median(workload(args.rounds, True) for _ in range(3))
    print(f"per request (PyGithub workload, {args.rounds} rounds of 6 calls, median of 3): "
          f"validated {on * 1000:.1f} ms, unvalidated baseline {off * 1000:.1f} ms, "
          f"validation costs {(on - off) * 1000:.1f} ms/request (ratio {on / off:.1f}x)")


if __name__ == "__main__":
    main()
