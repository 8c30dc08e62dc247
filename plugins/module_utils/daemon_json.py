# Copyright: gpufleet developers
# Apache-2.0
"""Docker's daemon.json, edited in place: gpufleet sets only the keys it owns and keeps the rest.

NVIDIA's old ``nvidia-docker2`` package and its Ansible role replaced the whole file, losing a site's
registry mirrors, log options and data root; ``nvidia-ctk runtime configure`` keeps the keys but
rewrites the formatting. Here the text itself is edited: an owned key whose value differs has only its
value replaced, a new key is appended after the last member, a removed key is cut out with its comma.
Everything else (the user's keys, their order, indentation, spacing, the trailing newline) stays byte
for byte. A dict value merges one level deep (``{"runtimes": {"nvidia": ...}}`` sets only
``runtimes.nvidia``; a user's other runtimes stay). New values are rendered in the file's own style:
its indent unit (spaces or a tab, taken from the file), one-line objects kept on one line.

A file that is not valid JSON, or whose top level is not an object, is refused and left untouched.
An empty or missing file counts as ``{}``. Writes go to a temporary file in the same directory,
fsynced, then renamed over the target with the original mode and owner; a backup of the old file
(``daemon.json.<timestamp>.gpufleet-bak``) is written first.

Host code: stdlib only, Python >= 3.8.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import tempfile
import time

DEFAULT_PATH = "/etc/docker/daemon.json"
BACKUP_SUFFIX = ".gpufleet-bak"
FILE_MODE = 0o644
DIR_MODE = 0o755
DEFAULT_UNIT = "  "
_WS = " \t\r\n"
_MISSING = object()

Merge = collections.namedtuple("Merge", "text changed keys_set keys_removed")
Merge.__doc__ = """Result of merge(): the new text, whether it differs in content, and what changed
(``keys_set`` names nested keys as ``runtimes.nvidia``)."""

_Member = collections.namedtuple("_Member", "key key_start key_end value_start value_end")


class DaemonJsonError(Exception):
    """daemon.json cannot be merged; ``path``, and for a parse error ``line`` and ``column``."""

    def __init__(self, msg, path, line=None, column=None):
        super().__init__(msg)
        self.path = path
        self.line = line
        self.column = column


class _Rerender(Exception):
    """The text cannot be edited in place (a duplicate key): render the whole object instead."""


# --- parsing --------------------------------------------------------------------------------------


def parse(text, path=DEFAULT_PATH):
    """The top-level object of ``text``; empty (or whitespace-only) text is ``{}``."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        raise DaemonJsonError(
            f"{path} is not valid JSON: {exc}. It was left unchanged: correct the file (or move it "
            "away) and run again.",
            path,
            line,
            column,
        ) from None
    if not isinstance(value, dict):
        raise DaemonJsonError(
            f"{path} holds a JSON {_json_type(value)} at the top level; Docker reads daemon.json as one "
            'JSON object ({"key": value, ...}). It was left unchanged: make it an object and run again.',
            path,
        )
    return value


def _json_type(value):
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null")


def _same(a, b):
    """Equal as JSON: true is not 1, key order inside an object does not matter."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _skip(text, i):
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _scan(text, open_pos):
    """The members of the object whose ``{`` is at ``open_pos``, and the index of its ``}``."""
    decoder = json.JSONDecoder()
    members = []
    i = _skip(text, open_pos + 1)
    if text[i] == "}":
        return members, i
    while True:
        key, key_end = decoder.raw_decode(text, i)
        value_start = _skip(text, _skip(text, key_end) + 1)
        _value, value_end = decoder.raw_decode(text, value_start)
        members.append(_Member(key, i, key_end, value_start, value_end))
        i = _skip(text, value_end)
        if text[i] == "}":
            return members, i
        i = _skip(text, i + 1)


def _line_indent(text, pos):
    """Leading whitespace of the line holding ``pos``."""
    start = text.rfind("\n", 0, pos) + 1
    end = start
    while end < pos and text[end] in " \t":
        end += 1
    return text[start:end]


# --- what changes ---------------------------------------------------------------------------------


def _changes(current, owned, remove):
    """(sets, merges, removes, keys_set) for the top-level object ``current``."""
    sets, merges, keys_set = {}, {}, []
    for key, value in owned.items():
        old = current.get(key, _MISSING)
        if isinstance(value, dict) and isinstance(old, dict):
            sub = {k: v for k, v in value.items() if k not in old or not _same(old[k], v)}
            if sub:
                merges[key] = sub
                keys_set += [f"{key}.{k}" for k in sub]
        elif old is _MISSING or not _same(old, value):
            sets[key] = value
            keys_set.append(key)
    removes = [key for key in remove if key in current]
    return sets, merges, removes, keys_set


def merged(current, owned, remove=()):
    """The object ``current`` with ``owned`` set (dicts one level deep) and ``remove`` deleted."""
    new = dict(current)
    for key, value in owned.items():
        if isinstance(value, dict) and isinstance(new.get(key), dict):
            new[key] = dict(new[key], **value)
        else:
            new[key] = value
    for key in remove:
        new.pop(key, None)
    return new


# --- rendering in the file's style ----------------------------------------------------------------


class _Style:
    def __init__(self, text, open_pos, members):
        self.key_sep = ": "
        self.unit = DEFAULT_UNIT
        if members:
            sep = text[members[0].key_end : members[0].value_start]
            if "\n" not in sep:
                self.key_sep = sep
            if "\n" in text[open_pos + 1 : members[0].key_start]:
                outer = _line_indent(text, open_pos)
                inner = _line_indent(text, members[0].key_start)
                if inner.startswith(outer) and len(inner) > len(outer):
                    self.unit = inner[len(outer) :]
            else:
                self.unit = None  # a one-line file stays on one line
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.ensure_ascii = all(ord(c) < 128 for c in text)

    def inline(self, value, item_sep=None):
        if item_sep is None:
            item_sep = ", " if " " in self.key_sep else ","
        return json.dumps(value, separators=(item_sep, self.key_sep), ensure_ascii=self.ensure_ascii)

    def block(self, value, indent):
        """``value`` over several lines, its later lines indented by ``indent``."""
        rendered = json.dumps(
            value,
            indent=self.unit or DEFAULT_UNIT,
            separators=(",", self.key_sep),
            ensure_ascii=self.ensure_ascii,
        )
        return rendered.replace("\n", self.newline + indent)


def _edit_object(text, open_pos, new_value, sets, merges, removes, style, inline):
    """Edits (start, end, replacement) that turn the object at ``open_pos`` into ``new_value``."""
    members, close = _scan(text, open_pos)
    if len({m.key for m in members}) != len(members):
        raise _Rerender(open_pos)  # the object is written anew, with the last of each (what Docker reads)
    kept = [i for i, m in enumerate(members) if m.key not in removes]
    if not kept:  # nothing left to anchor on: the object is written anew
        rendered = style.inline(new_value) if inline else style.block(new_value, _line_indent(text, open_pos))
        return [(open_pos, close + 1, rendered)]
    one_line = "\n" not in text[open_pos + 1 : members[0].key_start]
    key_sep = text[members[0].key_end : members[0].value_start]
    if "\n" in key_sep:
        key_sep = style.key_sep
    if one_line:
        item_sep = ", " if " " in key_sep else ","
        if len(members) > 1:
            item_sep = "," + text[members[0].value_end : members[1].key_start].split(",", 1)[-1]
        lead = item_sep

        def render(value):
            return style.inline(value, item_sep)
    else:
        indent = _line_indent(text, members[0].key_start)
        lead = "," + style.newline + indent

        def render(value):
            return style.block(value, indent)

    edits = []
    if kept[0] > 0:
        edits.append((members[0].key_start, members[kept[0]].key_start, ""))
    for j in range(kept[0] + 1, len(members)):
        if members[j].key in removes:
            edits.append((members[j - 1].value_end, members[j].value_end, ""))
    for m in members:
        if m.key in sets:
            edits.append((m.value_start, m.value_end, render(sets[m.key])))
        elif m.key in merges:
            edits += _edit_object(
                text, m.value_start, new_value[m.key], merges[m.key], {}, (), style, one_line or inline
            )
    present = {m.key for m in members}
    added = "".join(lead + style.inline(k) + key_sep + render(v) for k, v in sets.items() if k not in present)
    if added:
        at = members[kept[-1]].value_end
        edits.append((at, at, added))
    return edits


def _apply(text, edits):
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def merge(current, owned, remove=(), path=DEFAULT_PATH):
    """Merge ``owned`` into the daemon.json text ``current`` and delete the keys in ``remove``.

    Returns a Merge: the new text in the file's style (the same text when nothing changes), whether
    the content changed, the keys set and the keys removed. Raises DaemonJsonError for text that is
    not a JSON object and for a key both owned and to be removed.
    """
    both = sorted(set(owned) & set(remove))
    if both:
        raise DaemonJsonError(
            f"{path}: {', '.join(both)} both set and removed; list each key in settings or in remove, "
            "not both.",
            path,
        )
    value = parse(current, path)
    sets, merges, removes, keys_set = _changes(value, owned, remove)
    if not (sets or merges or removes):
        return Merge(current, False, [], [])
    new_value = merged(value, owned, removes)
    if not current.strip():
        return Merge(json.dumps(new_value, indent=DEFAULT_UNIT) + "\n", True, keys_set, removes)
    open_pos = _skip(current, 0)
    style = _Style(current, open_pos, _scan(current, open_pos)[0])
    try:
        edits = _edit_object(current, open_pos, new_value, sets, merges, removes, style, style.unit is None)
        text = _apply(current, edits)
        if _same(json.loads(text), new_value):
            return Merge(text, True, keys_set, removes)
    except _Rerender:
        pass
    # A duplicate key (or an edit that went wrong): the whole object is written in the file's style.
    close = len(current.rstrip(_WS))
    whole = (
        style.inline(new_value)
        if style.unit is None
        else style.block(new_value, _line_indent(current, open_pos))
    )
    return Merge(current[:open_pos] + whole + current[close:], True, keys_set, removes)


# --- the file -------------------------------------------------------------------------------------


def read(path):
    """(text, exists) of ``path``; a missing file is ("", False)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return "", False
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError as exc:
        raise DaemonJsonError(
            f"{path} is not UTF-8 text ({exc}). It was left unchanged: correct the file and run again.",
            path,
        ) from None


def backup_name(path, now=None):
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now))
    name = f"{path}.{stamp}{BACKUP_SUFFIX}"
    n = 1
    while os.path.lexists(name):
        name = f"{path}.{stamp}-{n}{BACKUP_SUFFIX}"
        n += 1
    return name


def write(path, text, backup=True):
    """Replace ``path`` with ``text`` atomically, keeping its mode and owner (0644 root:root when new).

    A backup of an existing file is written first when ``backup``; its path is returned (or None).
    """
    path = os.path.realpath(path)  # a symlinked daemon.json stays a link: its target is written
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, DIR_MODE)
        os.chmod(parent, DIR_MODE)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    saved = None
    if st is not None and backup:
        saved = backup_name(path)
        shutil.copy2(path, saved)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
            mode, owner = (st.st_mode & 0o7777, (st.st_uid, st.st_gid)) if st else (FILE_MODE, (0, 0))
            os.fchmod(handle.fileno(), mode)
            mine = os.fstat(handle.fileno())
            if (mine.st_uid, mine.st_gid) != owner and (st is not None or os.geteuid() == 0):
                os.fchown(handle.fileno(), *owner)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return saved


def update(path, settings, remove=(), backup=True, check=False):
    """Merge ``settings`` into the file at ``path`` (nothing is written in ``check`` mode).

    Returns dict(changed, before, after, backup_file, keys_set, keys_removed); raises DaemonJsonError
    (the file untouched) when it is not a JSON object.
    """
    before, _exists = read(path)
    result = merge(before, settings, remove, path)
    saved = None
    if result.changed and not check:
        saved = write(path, result.text, backup=backup)
    return dict(
        changed=result.changed,
        before=before,
        after=result.text,
        backup_file=saved,
        keys_set=result.keys_set,
        keys_removed=result.keys_removed,
    )
