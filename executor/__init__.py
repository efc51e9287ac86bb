"""executor: sandboxed execution of marketplace agents, with a signed receipt for every result."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("executor")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0.0.0"
