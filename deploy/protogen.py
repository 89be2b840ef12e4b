"""Generates the Python wire code in proto/tetriserve/v1 from the .proto sources beside it.

Run `python -m deploy.protogen` after editing a .proto file; a test regenerates into a
temporary folder and fails when the checked-in code is stale.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent.parent / "proto"
PACKAGE_DIR = PROTO_ROOT / "tetriserve" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_sources() -> list[Path]:
    return sorted(PACKAGE_DIR.glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Writes generated modules for every source under `out_root`/tetriserve/v1."""
    well_known = resources.files("grpc_tools") / "_proto"
    sources = [str(p.relative_to(PROTO_ROOT)) for p in proto_sources()]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {sources}")
    return sorted(
        p for p in (out_root / "tetriserve" / "v1").iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    )


def regenerate_in_place() -> list[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        for old in PACKAGE_DIR.iterdir():
            if old.name.endswith(GENERATED_SUFFIXES):
                old.unlink()
        written = []
        for path in generated:
            target = PACKAGE_DIR / path.name
            shutil.copyfile(path, target)
            written.append(target)
    return written


if __name__ == "__main__":
    for path in regenerate_in_place():
        print(path.relative_to(PROTO_ROOT.parent))
    sys.exit(0)
