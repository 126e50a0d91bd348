"""Fail unless pyright's ``--verifytypes`` rates the public API of stashly 100% complete.

Run by ``make lint``. The sources are put first on the path so the check reads this tree, not an installed copy
(an editable install is a path hook pyright cannot follow). Prints each symbol whose type is not fully known.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"}
    pyright = Path(sys.executable).with_name("pyright")
    command = [str(pyright), "--pythonpath", sys.executable, "--verifytypes", "stashly", "--ignoreexternal"]
    done = subprocess.run([*command, "--outputjson"], capture_output=True, text=True, env=environment, cwd=ROOT)
    report = json.loads(done.stdout)["typeCompleteness"]
    score = report["completenessScore"]
    if report["exportedSymbolCounts"]["withKnownType"] == 0:
        print("verifytypes found no exported symbols: is py.typed there and src/ on the path?", file=sys.stderr)
        return 1
    for symbol in report["symbols"]:
        if not symbol["isTypeKnown"] and symbol["isExported"]:
            for problem in symbol["diagnostics"]:
                print(f"{symbol['name']}: {problem['message']}", file=sys.stderr)
    print(f"pyright --verifytypes stashly: {score:.1%} of the public API's types known")
    return 0 if score == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
