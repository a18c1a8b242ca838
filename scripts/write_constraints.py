"""Write constraints.txt from a `pip install --dry-run --report` JSON (`make lock`).

Every package pip resolved is pinned, except the project itself; the header says
how the file was made so nobody edits it by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEADER = """\
# Lock for the whole platform: the base set (serving) and the extras training,
# pipelines, monitoring and dev, resolved together on Python 3.11 with pip.
# Every install in the Makefile and the images passes -c constraints.txt, so a
# fresh machine gets these versions. Regenerate with `make lock`; never by hand.
"""


def pins(report: dict) -> list[str]:
    """``name==version`` for each resolved package but the project, sorted.

    Local version labels (torch's ``+cpu``) are dropped: the lock names the
    release, and the Makefile and the images choose the build.
    """
    found = {
        item["metadata"]["name"].lower(): item["metadata"]["version"].split("+")[0]
        for item in report["install"]
        if item["metadata"]["name"].lower() != "interest-graph"
    }
    return [f"{name}=={version}" for name, version in sorted(found.items())]


def main(report_path: str, out_path: str) -> None:
    report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    lines = pins(report)
    Path(out_path).write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"{out_path}: {len(lines)} packages pinned")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: write_constraints.py PIP_REPORT.json constraints.txt")
    main(sys.argv[1], sys.argv[2])
