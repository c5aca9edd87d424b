#!/usr/bin/env bash
# Runs the Python example end to end against a certseal server in development mode:
#
#   examples/python/run.sh HOST:PORT [issue_and_verify.py options]
#
# Creates (or reuses) a virtualenv in $CERTSEAL_PY_VENV (default
# ${CARGO_TARGET_DIR:-target}/python-venv) with requirements.txt from PyPI, generates the client
# from proto/ into a temporary folder, and runs issue_and_verify.py. Needs Debian's python3 with
# its venv module (package python3-venv; scripts/ensure-deps installs it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
if (($# < 1)); then
  echo "usage: $0 HOST:PORT [issue_and_verify.py options]" >&2
  exit 2
fi
server="$1"
shift

venv="${CERTSEAL_PY_VENV:-${CARGO_TARGET_DIR:-$repo/target}/python-venv}"
python=/usr/bin/python3

if [ ! -x "$python" ]; then
  echo "run.sh: $python is missing: apt-get install python3 python3-venv (or run scripts/ensure-deps)" >&2
  exit 1
fi
# Debian splits venv's pip bootstrap (ensurepip) into python3-venv.
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "run.sh: $python has no venv/ensurepip module: apt-get install python3-venv (or run scripts/ensure-deps)" >&2
  exit 1
fi

mkdir -p "$(dirname "$venv")"
# Two runs sharing the virtualenv must not install into it at the same time.
exec 9>"$venv.lock"
flock 9

# A virtualenv left half-made (or made by another Python) is made again; a folder that is not a
# virtualenv is never deleted.
if [ -e "$venv" ] && ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  if [ ! -f "$venv/pyvenv.cfg" ]; then
    echo "run.sh: $venv exists and is not a virtualenv: remove it or set CERTSEAL_PY_VENV" >&2
    exit 1
  fi
  echo "run.sh: recreating the broken virtualenv $venv" >&2
  rm -rf "$venv"
fi
if [ ! -e "$venv" ]; then
  echo "run.sh: creating a virtualenv in $venv" >&2
  "$python" -m venv "$venv"
fi

# pip runs only when requirements.txt changed since the last install into this virtualenv.
stamp="$venv/.certseal-requirements.txt"
if ! cmp -s "$here/requirements.txt" "$stamp" \
  || ! "$venv/bin/python" -c 'import grpc, grpc_tools.protoc, grpc_status' >/dev/null 2>&1; then
  echo "run.sh: installing requirements.txt into $venv" >&2
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi
flock -u 9

gen="$(mktemp -d)"
trap 'rm -rf "$gen"' EXIT
PYTHON="$venv/bin/python" bash "$here/generate.sh" "$gen"
"$venv/bin/python" "$here/issue_and_verify.py" --server "$server" --generated "$gen" "$@"
