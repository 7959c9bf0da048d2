"""Run every benchmark (or the ones named) in a fresh process each."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv):
    names = argv or sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))
    failed = []
    for name in names:
        print(f"\n=== bench {name} ===", flush=True)
        result = subprocess.run(
            [sys.executable, "-m", f"bench.bench_{name}"], cwd=HERE.parent
        )
        if result.returncode:
            failed.append(name)
    if failed:
        print(f"\nFailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
