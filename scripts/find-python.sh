#!/usr/bin/env bash
# Prints the path of a Python >= 3.12 interpreter, or explains that none was found.
# Looks on PATH first, then in pyenv's versions, so a machine where 3.12 is only
# installed under pyenv still works without activating it.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
for candidate in "${PYTHON:-}" python3.13 python3.12 python3 python; do
    [ -n "$candidate" ] || continue
    path=$(command -v "$candidate" 2>/dev/null) || continue
    if ok "$path"; then echo "$path"; exit 0; fi
done
if command -v pyenv >/dev/null 2>&1; then
    for path in $(ls -d "$(pyenv root)"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do
        if ok "$path"; then echo "$path"; exit 0; fi
    done
fi
echo "error: no Python >= 3.12 found (tried \$PYTHON, python3.13, python3.12, python3, pyenv versions)." >&2
echo "       Install Python 3.12 or newer, or point PYTHON=/path/to/python3.12 at one." >&2
exit 1
