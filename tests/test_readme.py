"""The README's first two commands stay true: CI runs the same test command."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_first_two_readme_commands():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    main_job, tests = blocks[0], blocks[1]
    assert "pip install" in main_job and "jaxgen train experiments/" in main_job
    config = main_job.split("jaxgen train ")[1].split()[0]
    assert (ROOT / config).exists(), f"the README's main job names a missing config {config}"
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines(), "the README's test command must be the one .ci/run runs"
