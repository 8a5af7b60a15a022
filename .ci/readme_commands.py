"""Print the README's commands for CI, so CI runs exactly what a new user reads.

    python .ci/readme_commands.py install   # the quick start's pip lines, one per line
    python .ci/readme_commands.py main      # the quick start's `nlc train` line
    python .ci/readme_commands.py test      # the test command

The quick start is the first ```bash block under "## Quick start"; the test command is the
block after "Run the tests". A README that no longer has them fails CI here, loudly.
"""
import re
import sys
from pathlib import Path


def blocks_after(text: str, marker: str) -> list[str]:
    at = text.find(marker)
    if at < 0:
        sys.exit(f"README.md: no '{marker}' section")
    m = re.search(r"```bash\n(.*?)```", text[at:], re.S)
    if not m:
        sys.exit(f"README.md: no ```bash block after '{marker}'")
    # drop trailing comments (`# ...` after two spaces) and blank lines
    return [re.sub(r"\s+#.*$", "", ln).strip() for ln in m.group(1).splitlines() if ln.strip()]


def main(what: str) -> None:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    quick = blocks_after(text, "## Quick start")
    picks = {
        "install": [ln for ln in quick if ln.startswith("pip install")],
        "main": [ln for ln in quick if ln.startswith("nlc train")],
        "test": blocks_after(text, "Run the tests"),
    }[what]
    if not picks:
        sys.exit(f"README.md: no {what} command in its block")
    print("\n".join(picks))


if __name__ == "__main__":
    main(sys.argv[1])
