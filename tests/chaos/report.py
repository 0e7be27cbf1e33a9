"""Print what the reliability scenarios measured (the JSON lines that
``record`` appends to AIART_CHAOS_REPORT) as one table per scenario:
python -m tests.chaos.report FILE"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any


def tables(lines: list[str]) -> str:
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        if line.strip():
            row = json.loads(line)
            rows[row.pop("scenario")].append(row)
    out = []
    for scenario in sorted(rows):
        columns = sorted({key for row in rows[scenario] for key in row})
        cells = [[str(row.get(c, "")) for c in columns] for row in rows[scenario]]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        out.append(f"scenario {scenario}")
        out.append("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        out += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True))
                for r in cells]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as report:
        print(tables(report.readlines()))
