"""Command-line tools written in Go, built once with `go install` into the shared cache.

Tests that prove the contract from outside Python (grpcurl) or check the deploy manifests
(kustomize) ask for a tool by module path and version; it is built into
`${ORDERMESH_CACHE:-~/.cache/ordermesh}/go/<name>-<version>/` under a lock, so concurrent
sessions never race and later runs reuse it. Without Go the tests are skipped with what to
install, except under CI, where that is an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.servers.common import cache_root, file_lock, unavailable

INSTALL_SECONDS = 600.0


def go_tool(name: str, package: str, version: str) -> Path:
    """Return the path of Go tool `name`, building `package@version` first when needed.

    Args:
        name: The executable's name (the last element of the package path, usually).
        package: The module path of its main package, e.g. github.com/x/y/cmd/y.
        version: A module version, e.g. v1.9.3.

    Raises:
        pytest.skip.Exception or pytest.fail.Exception: Go is missing or the build failed
            (see `tests.servers.common.unavailable`).
    """
    go = shutil.which("go")
    if go is None:
        raise unavailable(f"`{name}` is built with Go: install Go 1.22+ (https://go.dev/dl/)")
    home = cache_root() / "go" / f"{name}-{version}"
    binary = home / "bin" / name
    home.mkdir(parents=True, exist_ok=True)
    with file_lock(home / ".lock"):
        if binary.is_file():
            return binary
        env = {
            **os.environ,
            "GOBIN": str(home / "bin"),
            "GOPATH": str(cache_root() / "go" / "path"),
            "GOFLAGS": "-modcacherw",
        }
        try:
            subprocess.run(
                [go, "install", f"{package}@{version}"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
                timeout=INSTALL_SECONDS,
            )
        except subprocess.CalledProcessError as e:
            raise unavailable(f"go install {package}@{version} failed:\n{e.stderr}") from None
        except subprocess.TimeoutExpired:
            raise unavailable(
                f"go install {package}@{version} took over {INSTALL_SECONDS:.0f} s"
            ) from None
    return binary
