"""Generate ordermesh/v1 (messages, gRPC stubs and their type stubs) from protos/."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
PACKAGE = Path("ordermesh") / "v1"
HEADER = '"""Generated from protos/ordermesh/v1 by `make proto`. Do not edit."""\n'


def proto_files() -> list[str]:
    """The .proto files of the contract, relative to protos/, in a stable order."""
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def generate(out: Path) -> None:
    """Run protoc with the Python, gRPC and mypy plugins, writing below `out`."""
    (out / PACKAGE).mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"
    bindir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *proto_files(),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see its message above")
    (out / PACKAGE / "__init__.py").write_text(HEADER)


def main() -> int:
    """Generate into the repository, or into --out for a staleness check."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="root to generate below")
    args = parser.parse_args()
    target = args.out / PACKAGE
    for old in target.glob("*_pb2*.py*"):
        old.unlink()
    generate(args.out)
    print(f"generated {len(list(target.glob('*.py*')))} files in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
