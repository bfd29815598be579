"""Where the time goes, from py-spy's collapsed stacks (``py-spy record --format raw``).

Each sample is charged to the innermost headwater function on its stack (or, with none, to
the package of its innermost frame: dagster, pyarrow, …) and to its thread: a decoding thread
(the compiled Avro decoder's) or any other. Prints the share of samples per place, largest first.

    .venv/bin/python benchmarks/summarize_profile.py stream.spy --top 25
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "headwater"
FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def ours(file: str) -> str | None:
    """The headwater module a frame's file is, if it is one (py-spy shortens paths)."""
    rel = file.split("headwater/", 1)[1] if "headwater/" in file else file
    if "site-packages" in file or not (PACKAGE / rel).is_file():
        return None
    return rel.removesuffix(".py").replace("/", ".")


def place(frames: list[str]) -> tuple[str, str]:
    """(process kind, place) of one stack, outermost frame first."""
    kind = "decode" if any("avro_native.py" in f for f in frames) else "main"
    for frame in reversed(frames):
        m = FRAME.match(frame)
        module = m and ours(m["file"])
        if module:
            return kind, f"{module}.{m['func']}"
    for frame in reversed(frames):
        m = FRAME.match(frame)
        if m:
            top = m["file"].split("site-packages/", 1)[-1].split("/", 1)[0]
            return kind, f"[{top}]"
    return kind, "[native]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    counts: Counter[tuple[str, str]] = Counter()
    with open(args.file) as fh:
        for line in fh:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            frames = [f for f in stack.split(";") if not f.startswith("process ")]
            counts[place(frames)] += int(n)
    total = sum(counts.values())
    by_kind = Counter()
    for (kind, _), n in counts.items():
        by_kind[kind] += n
    print(f"{total} samples: " + ", ".join(f"{k} {n / total:.0%}" for k, n in by_kind.items()))
    for (kind, where), n in counts.most_common(args.top):
        print(f"{n / total:6.1%}  {kind:<6} {where}")


if __name__ == "__main__":
    main()
