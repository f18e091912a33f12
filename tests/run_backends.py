"""Run the tests marked for every backend on JAX and on PyTorch, as a user without TensorFlow would.

    python tests/run_backends.py                  # both backends, one after the other
    python tests/run_backends.py --backends jax -- -x -k detect   # arguments after -- go to pytest

Each backend is a separate ``python -m pytest`` process with ``KERAS_BACKEND`` set (Keras picks its backend
once per process) and ``MRCNN_TEST_HIDE_TENSORFLOW=1`` (tests/conftest.py makes TensorFlow unimportable there;
the tests that compare with TensorFlow start it in a subprocess of their own). tests/conftest.py selects the
tests marked ``all_backends`` and ``off_tensorflow``. JAX and PyTorch come from requirements-backends.txt; a
missing one is an error that says so. Exits non-zero if any backend's run failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = {"jax": "jax", "torch": "torch"}  # backend -> the package it needs


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args = []
    if "--" in argv:
        cut = argv.index("--")
        argv, pytest_args = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", choices=sorted(BACKENDS), default=["jax", "torch"])
    args = parser.parse_args(argv)
    missing = [name for name in args.backends if importlib.util.find_spec(BACKENDS[name]) is None]
    if missing:
        print(f"run_backends: {', '.join(missing)} not installed; install the backends' extra with "
              f"`python -m pip install -r requirements-backends.txt`", file=sys.stderr)
        return 2
    failed = []
    for name in args.backends:
        env = {**os.environ, "KERAS_BACKEND": name, "MRCNN_TEST_HIDE_TENSORFLOW": "1"}
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args]
        print(f"== KERAS_BACKEND={name} {' '.join(command[1:])}", flush=True)
        start = time.monotonic()
        code = subprocess.call(command, cwd=ROOT, env=env)
        print(f"== KERAS_BACKEND={name}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"run_backends: tests failed on {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
