"""stats: {"numbers": [...]} on stdin -> {"count", "sum", "mean", "min", "max"} on stdout.

The example container agent in Python, on the offline Debian base.
"""

import json
import sys


def main() -> None:
    numbers = json.load(sys.stdin)["numbers"]
    if not numbers:
        print(json.dumps({"count": 0, "sum": 0, "mean": None, "min": None, "max": None}))
        return
    total = sum(numbers)
    print(json.dumps({"count": len(numbers), "sum": total, "mean": total / len(numbers),
                      "min": min(numbers), "max": max(numbers)}))


if __name__ == "__main__":
    main()
