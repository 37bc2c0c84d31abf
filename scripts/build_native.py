"""Compile the shared event types and both cores with mypyc, into build/native/.

The compiled build is optional: the source tree stays pure Python and `make test` never
needs it. It is for speed where the cores are hot (bench/, or a service that puts
build/native first on sys.path).

ordermesh.events and .amounts are compiled in one group with matcher.core and ubscore.core,
so the event dataclasses are native classes and every call and attribute access between
them is native too. Compiling a core alone leaves it reading interpreted dataclasses
through generic attribute lookups, which gains little or loses.

build/native/ is an importable mirror of just those modules: each compiled module is an
extension beside a copy of its source, the modules that stay interpreted (INTERPRETED) are
copied as they are, and each mirrored package's __init__ also searches its source directory,
so every other module (adapters, codec, config) still comes from the source tree. Nothing is
ever written into the source tree. A rebuild happens only when a mirrored source, this
script, Python or mypy changed (the digest in build/native/BUILD.json).

    .venv/bin/python scripts/build_native.py [--force]    build if missing or stale
    .venv/bin/python scripts/build_native.py --check      exit 1 if missing or stale
    .venv/bin/python scripts/build_native.py --test [PYTEST ARGS]
                                                          build, then tests/unit on it
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "native"
WORK = OUT / ".work"  # generated C, objects and the mypy cache; not importable
MANIFEST = "BUILD.json"
GROUP = "ordermesh_native"
"""The name of the one shared library every compiled module lives in."""

SHARED = ("ordermesh/amounts.py", "ordermesh/events.py")
CORES = ("matcher/core", "ubscore/core")
PACKAGES = ("ordermesh", "matcher", "ubscore", "matcher/core", "ubscore/core")
INTERPRETED = {
    "matcher/core/__init__.py": "re-exports only",
    "ubscore/core/__init__.py": "re-exports only",
    "ordermesh/model.py": (
        "enums (never native) and NewTypes (erased when compiled); and OrdermeshError, which "
        "interpreted modules subclass, and a native class may not be"
    ),
    "ordermesh/markets.py": (
        "frozen dataclasses without a __reduce__, which a native class needs to be copied "
        "or pickled (the cores keep what they need of a market in their own objects)"
    ),
    "ubscore/core/errors.py": "exceptions derived from RuntimeError, which no native class can be",
    "matcher/core/snapshot.py": "frozen dataclasses without a __reduce__, built only for snapshots",
    "ubscore/core/snapshot.py": "frozen dataclasses without a __reduce__, built only for snapshots",
}
"""Modules mirrored but not compiled, and why."""
RESOURCES = ("config",)
"""Directories that mirrored modules find beside their package (markets.toml)."""
TWIN_TESTS = (
    # They test the layout twins, which only ordinary (interpreted) classes allow.
    "tests/unit/matcher/test_construct.py::test_every_event_class_takes_the_fast_path_here",
    "tests/unit/matcher/test_construct.py::test_a_twin_built_value_equals_the_constructed_one",
)


def compiled_sources() -> list[str]:
    """The modules mypyc compiles, as paths relative to the repository root."""
    cores = sorted(str(p.relative_to(ROOT)) for core in CORES for p in (ROOT / core).glob("*.py"))
    return [path for path in (*SHARED, *cores) if path not in INTERPRETED]


def mirrored_sources() -> list[str]:
    """Every file copied into build/native: the compiled modules, the rest of their packages."""
    packages = [f"{package}/__init__.py" for package in PACKAGES]
    return sorted({*packages, *INTERPRETED, *compiled_sources()})


def module_name(path: str) -> str:
    """ordermesh/events.py -> ordermesh.events; a package's __init__.py -> the package."""
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def digest() -> str:
    """What the build depends on: the mirrored sources, this script, Python and mypy."""
    hasher = hashlib.sha256()
    hasher.update(sys.version.encode())
    hasher.update(metadata.version("mypy").encode())
    hasher.update(Path(__file__).read_bytes())
    for path in mirrored_sources():
        hasher.update(path.encode() + b"\0" + (ROOT / path).read_bytes() + b"\0")
    return hasher.hexdigest()


def read_manifest(out: Path = OUT) -> dict[str, Any] | None:
    """The manifest of the build in `out`, or None if there is none."""
    try:
        manifest: dict[str, Any] = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest


def is_fresh(out: Path = OUT) -> bool:
    """Whether `out` holds a complete build of the current sources."""
    manifest = read_manifest(out)
    return manifest is not None and manifest.get("sources_sha256") == digest()


def _mirror(out: Path) -> None:
    """Copy the sources; each package also searches its source directory for the rest."""
    for path in mirrored_sources():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        text = (ROOT / path).read_text(encoding="utf-8")
        if path.endswith("__init__.py"):
            source_dir = json.dumps(str((ROOT / path).parent))
            text += (
                "\n# build/native: modules not mirrored here come from the source tree.\n"
                f"__path__.append({source_dir})\n"
            )
        target.write_text(text, encoding="utf-8")
    for resource in RESOURCES:
        (out / resource).symlink_to(ROOT / resource, target_is_directory=True)


def _compile(out: Path) -> None:
    """Run mypyc and the C compiler in a child interpreter whose cwd is the mirror."""
    command = [sys.executable, str(Path(__file__).resolve()), "--compile-in-mirror"]
    # Our own interpreter on this very script; the cwd makes module names the mirror's.
    subprocess.run(command, cwd=out, check=True)  # noqa: S603


def _setup() -> None:
    """The child's part: build the mypyc extensions in place, in the current directory."""
    from mypyc.build import mypycify  # noqa: PLC0415 - only the build child needs mypyc
    from setuptools import (  # type: ignore[import-untyped]  # noqa: PLC0415 - no stubs; build child only
        setup,
    )

    extensions = mypycify(
        [*compiled_sources(), "--cache-dir", str(WORK / "mypy-cache")],
        group_name=GROUP,
        target_dir=str(WORK / "c"),
    )
    jobs = str(max(1, min(len(extensions), os.cpu_count() or 1)))
    setup(
        name=GROUP,
        ext_modules=extensions,
        script_args=["-q", "build_ext", "--build-lib", ".", "--build-temp", str(WORK / "temp"),
                     "--parallel", jobs],
    )  # fmt: skip


def build(out: Path = OUT, *, force: bool = False) -> bool:
    """Build the compiled mirror into `out` unless it is fresh; return True if it built.

    Raises:
        SystemExit: mypyc or the C compiler failed, or an extension is missing.
    """
    if not force and is_fresh(out):
        return False
    started = time.monotonic()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    _mirror(out)
    try:
        _compile(out)
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"mypyc build failed (exit {e.returncode}); output above") from e
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    missing = [path for path in compiled_sources() if not (out / (path[:-3] + suffix)).exists()]
    if missing:
        raise SystemExit(f"mypyc built no extension for: {', '.join(missing)}")
    manifest = {
        "sources_sha256": digest(),
        "python": sys.version.split()[0],
        "mypy": metadata.version("mypy"),
        "compiled": [module_name(path) for path in compiled_sources()],
        "interpreted": {module_name(path): why for path, why in sorted(INTERPRETED.items())},
        "shared_library": GROUP,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return True


def test(pytest_args: list[str]) -> int:
    """Run tests/unit (or `pytest_args`) on the compiled modules; pytest's exit status."""
    import pytest  # noqa: PLC0415 - a dev tool, needed by --test only

    sys.path.insert(0, str(OUT))
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for name in (read_manifest() or {}).get("compiled", []):
        path = importlib.import_module(name).__file__ or ""
        if not (path.endswith(suffix) and Path(path).is_relative_to(OUT)):
            print(f"{name} was imported from {path}, not from {OUT}", file=sys.stderr)
            return 1
    print(f"testing the compiled modules of {OUT.relative_to(ROOT)} (layout twin tests skipped)")
    deselected = [arg for test_id in TWIN_TESTS for arg in ("--deselect", test_id)]
    # pythonpath: ours instead of pyproject's "."; append: test dirs must not go first either.
    options = ["-o", f"pythonpath={OUT}", "--import-mode=append", "-p", "no:cacheprovider"]
    return pytest.main([*options, *deselected, *(pytest_args or ["-q", "tests/unit"])])


def main() -> int:
    """Build build/native (or check it, test it, or be the compiling child)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--check", action="store_true", help="exit 1 if missing or stale")
    parser.add_argument(
        "--test", action="store_true", help="then run tests/unit (or the PYTEST ARGS) on it"
    )
    parser.add_argument("--compile-in-mirror", action="store_true", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if rest and not args.test:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    where = OUT.relative_to(ROOT)
    if args.compile_in_mirror:
        _setup()
        return 0
    if args.check:
        fresh = is_fresh()
        print(f"{where}: {'up to date' if fresh else 'missing or stale'}")
        return 0 if fresh else 1
    if build(force=args.force):
        manifest = read_manifest() or {}
        print(
            f"built {where}: {len(manifest['compiled'])} modules compiled in "
            f"{manifest['build_seconds']} s"
        )
    else:
        print(f"{where} is up to date")
    return test(rest) if args.test else 0


if __name__ == "__main__":
    sys.exit(main())
