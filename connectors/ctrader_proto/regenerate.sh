#!/usr/bin/env bash
# Regenerate openapi_subset_pb2.py (and its typing stub) from openapi_subset.proto.
#
# Needs grpcio-tools (a dev tool: `pip install grpcio-tools`); it bundles protoc, so no system
# protoc is used. The generated module checks at import that the protobuf runtime is at least
# as new as the protoc that wrote it: regenerate with a grpcio-tools whose protoc is not newer
# than the oldest protobuf runtime the project supports.
#
# Usage: connectors/ctrader_proto/regenerate.sh [python]   (default: the repo's .venv python)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${1:-$repo/.venv/bin/python}"

cd "$repo"
# The proto path is the repo root, so the file registers in the descriptor pool under its
# repo path (connectors/ctrader_proto/openapi_subset.proto), a name no other copy will use.
"$python" -m grpc_tools.protoc \
    --proto_path=. \
    --python_out=. \
    --pyi_out=. \
    connectors/ctrader_proto/openapi_subset.proto

# Generated code is not linted or type-checked as the project's own code.
for f in "$here/openapi_subset_pb2.py" "$here/openapi_subset_pb2.pyi"; do
    { printf '# ruff: noqa\n# mypy: ignore-errors\n'; cat "$f"; } > "$f.tmp"
    mv "$f.tmp" "$f"
done

echo "regenerated $(cd "$repo" && ls connectors/ctrader_proto/openapi_subset_pb2.py*) with $("$python" -m grpc_tools.protoc --version)"
