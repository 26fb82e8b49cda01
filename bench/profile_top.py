"""Summarise py-spy's folded stacks (`bench/run --profile`): the functions where the
samples are (self) and the ones they pass through (inclusive), as shares of all samples.

    uv run python -m bench.profile_top bench/results/<run>/profile-patch_task-*.txt
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

IDLE_FRAMES = ("select (selectors.py", "run_once (uvloop", "_run_once (asyncio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", help="only stacks passing through a frame containing this")
    args = parser.parse_args()

    own: Counter[str] = Counter()
    through: Counter[str] = Counter()
    total = 0
    for path in args.files:
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or (args.match and args.match not in stack):
                continue
            count = int(count_text)
            frames = stack.split(";")
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                through[frame] += count
    idle = sum(count for frame, count in own.items() if frame.startswith(IDLE_FRAMES))
    print(f"{total} samples, {idle / max(total, 1):.0%} idle in the event loop's poll\n")
    for title, counter in (("self", own), ("inclusive", through)):
        print(f"== {title}")
        for frame, count in counter.most_common(args.top):
            print(f"{count / total:6.1%}  {frame}")
        print()


if __name__ == "__main__":
    main()
