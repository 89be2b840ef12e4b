"""The wire code checked in under proto/ is what the .proto sources generate today."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from deploy import protogen


def test_generated_code_is_current(tmp_path: Path) -> None:
    generated = protogen.generate(tmp_path)
    assert generated, "protoc produced nothing"
    stale = [
        path.name
        for path in generated
        if not (protogen.PACKAGE_DIR / path.name).exists()
        or (protogen.PACKAGE_DIR / path.name).read_bytes() != path.read_bytes()
    ]
    assert stale == [], f"run `python -m deploy.protogen`: stale {stale}"


def test_every_source_has_its_modules() -> None:
    for source in protogen.proto_sources():
        for suffix in protogen.GENERATED_SUFFIXES:
            assert (protogen.PACKAGE_DIR / f"{source.stem}{suffix}").exists()


def test_package_name_does_not_clash_with_proto_plus() -> None:
    kv_pb2 = importlib.import_module("tetriserve.v1.kv_pb2")
    handle = kv_pb2.KVPageHandle(key=kv_pb2.KVPageKey(model="m", adapter="a"), length=4)
    assert kv_pb2.KVPageHandle.FromString(handle.SerializeToString()) == handle
    # `proto` stays the name of the third-party package, not a folder of this project.
    proto = sys.modules.get("proto") or importlib.import_module("proto")
    assert Path(proto.__file__).parent != protogen.PROTO_ROOT
