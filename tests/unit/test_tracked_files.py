"""What a fresh clone gets must stand on its own. A merge once committed `.venv` as a symlink into a
helper's worktree (the ignore rule `/.venv/` matches a directory, not a link), so every fresh clone
held a dangling `.venv` and `make test` stopped at `python3 -m venv` with "File exists"."""

import os
import subprocess

from conftest import REPO

# Build outputs that make creates; none may be tracked, whatever kind of entry they are.
GENERATED = (".venv", ".venv-newest", ".collections", ".cache", "reports", "runs", "context")


def _tracked():
    out = subprocess.run(
        ["git", "ls-files", "-s"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    entries = []
    for line in out.splitlines():
        meta, path = line.split("\t", 1)
        entries.append((meta.split()[0], path))
    assert len(entries) > 100, "git ls-files found too few files; is this a checkout?"
    return entries


def test_no_build_output_is_tracked():
    tracked = [path for _, path in _tracked() if path.split("/", 1)[0] in GENERATED]
    assert not tracked, f"build outputs are tracked; `git rm --cached` them: {tracked}"


def test_tracked_symlinks_stay_inside_the_repository():
    outside = {}
    for mode, path in _tracked():
        if mode != "120000":
            continue
        target = os.readlink(REPO / path)
        resolved = os.path.normpath(os.path.join(os.path.dirname(str(REPO / path)), target))
        if os.path.isabs(target) or not resolved.startswith(str(REPO) + os.sep):
            outside[path] = target
    assert not outside, f"tracked symlinks point outside the clone: {outside}"


def test_git_ignores_a_venv_link_as_well_as_a_venv_directory():
    # check-ignore with --no-index asks the rules, whatever is on disk now.
    for path in (".venv", ".venv/bin/python", ".venv-newest"):
        result = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO, check=False)
        assert result.returncode == 0, f"{path} is not ignored by .gitignore"
