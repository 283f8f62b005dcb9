"""The README's Python example ("Use it as a library — Python") runs as written and prints the demo
model's greedy continuation."""
import re
import subprocess
import sys

import mamba2
from conftest import DEMO, ROOT


def readme_example():
    """The first ```python block of the README's section "Use it as a library — Python"."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use it as a library — Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs(greedy):
    run = subprocess.run([sys.executable, "-c", readme_example()], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    with mamba2.Tokenizer(DEMO) as tok:
        assert run.stdout == tok.decode(greedy["greedy_ids"][:16]) + "\n"
