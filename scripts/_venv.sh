# Sourced by the scripts: make (once) and enter the project's virtual environment,
# then install the package with the extras named in $EXTRAS.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check -e ".${EXTRAS:+[$EXTRAS]}" 2>&1 | grep -v -E "^WARNING: Location|is ignored" || true
python -c "import jax_lstm_ae" || { echo "installation failed" >&2; exit 1; }
