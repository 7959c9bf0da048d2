"""What a fresh process loads: start-up promises are about imports."""

import ast
import os
import subprocess
import sys


def modules_loaded(code: str, prefixes: tuple) -> list[str]:
    """The modules named with one of `prefixes` that a new Python process
    has imported after `django.setup()` and `code`."""
    script = (
        "import django, sys; django.setup()\n"
        f"{code}\n"
        f"print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "core.tests.settings"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return ast.literal_eval(done.stdout.strip())
