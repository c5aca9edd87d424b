#!/usr/bin/env bash
# Generates certseal's Python gRPC client (messages, stubs and type stubs) from proto/.
#
#   generate.sh [OUT_DIR]      default: examples/python/generated (git-ignored)
#
# Needs grpcio-tools in the Python named by $PYTHON (default: python3), e.g. a virtualenv with
# requirements.txt installed. The modules import as `certseal.v1.xxx_pb2`, so OUT_DIR is the
# folder to put on sys.path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$here/generated}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import grpc_tools.protoc' >/dev/null 2>&1; then
  echo "generate.sh: $python has no grpcio-tools: pip install -r $here/requirements.txt (in a virtualenv)" >&2
  exit 1
fi

mkdir -p "$out"
out="$(cd "$out" && pwd)"
# Drop modules of protos that may have been removed since the last run.
rm -f "$out"/certseal/v1/*_pb2.py "$out"/certseal/v1/*_pb2.pyi "$out"/certseal/v1/*_pb2_grpc.py

# protoc resolves imports against -I; grpc_tools.protoc adds the bundled well-known types
# (google/protobuf/timestamp.proto) itself.
(
  cd "$repo/proto"
  "$python" -m grpc_tools.protoc -I . \
    --python_out="$out" --grpc_python_out="$out" --pyi_out="$out" \
    certseal/v1/*.proto
)
# Regular packages, so that no other `certseal` on sys.path can shadow these.
touch "$out/certseal/__init__.py" "$out/certseal/v1/__init__.py"
