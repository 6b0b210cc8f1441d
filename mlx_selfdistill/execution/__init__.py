"""Sandboxed test execution: a pre-started worker pool forks one limited child per
candidate; the child reports plain data and the parent grades against expected values
the child never sees.

    from mlx_selfdistill.execution import SandboxPool, verify_samples, verify_file
"""

from .pool import SandboxPool, inspect_protections
from .verify import verify_file, verify_into_file, verify_samples

__all__ = ["SandboxPool", "inspect_protections", "verify_samples", "verify_file", "verify_into_file"]
