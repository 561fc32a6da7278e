"""
Turn trial's closing line ("PASSED (skips=1, successes=42)") into the plain
"N passed, N failed, N skipped" line that CI tooling reads.
"""

import re
import sys


def summarise(text: str) -> str:
    matches = list(re.finditer(r"^(PASSED|FAILED) \(([^)]*)\)\s*$", text, re.M))
    if not matches:
        return "tests: 0 passed, 0 failed"
    counts = dict.fromkeys(
        ("successes", "failures", "errors", "skips", "expectedFailures", "unexpectedSuccesses"),
        0,
    )
    for part in matches[-1].group(2).split(","):
        key, _, value = part.strip().partition("=")
        if key in counts:
            counts[key] = int(value)
    passed = counts["successes"] + counts["expectedFailures"]
    failed = counts["failures"] + counts["errors"] + counts["unexpectedSuccesses"]
    return f"tests: {passed} passed, {failed} failed, {counts['skips']} skipped"


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        print(summarise(f.read()))
