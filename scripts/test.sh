#!/usr/bin/env bash
# The test command: set up .venv, install the package with its test extra, run pytest.
EXTRAS=test
. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
python -m pytest "$@"
