"""The sandbox: a hardened, throwaway container over the repository. Knows nothing of agents or CLIs."""

from runner.sandbox.base import ExecResult, Sandbox, SandboxInfo, SandboxMode, normalize_path

__all__ = ["ExecResult", "Sandbox", "SandboxInfo", "SandboxMode", "normalize_path"]
