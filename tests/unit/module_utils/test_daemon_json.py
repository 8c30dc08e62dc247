"""daemon_json: the owned keys merged into the text of Docker's daemon.json; the user's keys, their
order and the file's formatting stay byte for byte (NVIDIA's old packages replaced the file)."""

import json
import os
import random
import stat
from pathlib import Path

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils import daemon_json as dj

NVIDIA = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}}}
OWNED = dict(NVIDIA, **{"default-runtime": "nvidia"})

USER_2 = """{
  "data-root": "/srv/docker",
  "registry-mirrors": ["https://mirror.example"],
  "log-opts": {"max-size": "10m", "max-file": "3"},
  "storage-driver": "overlay2"
}
"""

USER_4 = """{
    "log-driver": "json-file",
    "runtimes": {
        "kata": {
            "path": "/usr/bin/kata-runtime"
        }
    }
}
"""

USER_TAB = '{\n\t"dns": ["10.0.0.2", "10.0.0.3"],\n\t"debug": false\n}\n'


def test_user_keys_order_and_text_stay_new_keys_appended():
    result = dj.merge(USER_2, OWNED)
    assert result.changed
    assert result.keys_set == ["runtimes", "default-runtime"]
    # Every line the user wrote is still there, unchanged and in order (the one-line arrays and
    # objects too); only the last member gained a comma.
    lines = result.text.splitlines()
    assert lines[:4] == USER_2.splitlines()[:4]
    assert lines[4] == '  "storage-driver": "overlay2",'
    assert list(json.loads(result.text)) == [
        "data-root",
        "registry-mirrors",
        "log-opts",
        "storage-driver",
        "runtimes",
        "default-runtime",
    ]
    assert result.text.endswith('  "default-runtime": "nvidia"\n}\n')
    assert '\n  "runtimes": {\n    "nvidia": {\n      "path": "nvidia-container-runtime",' in result.text


def test_four_space_file_keeps_its_indent_and_other_runtime():
    result = dj.merge(USER_4, OWNED)
    assert result.keys_set == ["runtimes.nvidia", "default-runtime"]
    assert result.text == (
        "{\n"
        '    "log-driver": "json-file",\n'
        '    "runtimes": {\n'
        '        "kata": {\n'
        '            "path": "/usr/bin/kata-runtime"\n'
        "        },\n"
        '        "nvidia": {\n'
        '            "path": "nvidia-container-runtime",\n'
        '            "runtimeArgs": []\n'
        "        }\n"
        "    },\n"
        '    "default-runtime": "nvidia"\n'
        "}\n"
    )


def test_tab_indented_file_stays_tab_indented():
    result = dj.merge(USER_TAB, NVIDIA)
    assert result.text.startswith(USER_TAB[: USER_TAB.index("false") + len("false")] + ",\n")
    indents = [line[: len(line) - len(line.lstrip())] for line in result.text.splitlines() if line.strip()]
    assert indents and all(set(i) <= {"\t"} for i in indents), result.text
    assert '\n\t\t"nvidia": {\n\t\t\t"path": "nvidia-container-runtime",' in result.text


def test_one_line_file_stays_one_line_with_its_separators():
    text = '{"bip":"172.26.0.1/16","runtimes":{"kata":{"path":"k"}}}'
    result = dj.merge(text, OWNED)
    assert result.text == (
        '{"bip":"172.26.0.1/16","runtimes":{"kata":{"path":"k"},'
        '"nvidia":{"path":"nvidia-container-runtime","runtimeArgs":[]}},"default-runtime":"nvidia"}'
    )


def test_a_changed_value_is_replaced_in_place_and_the_rest_kept():
    text = USER_4.replace('"kata"', '"nvidia"').replace("/usr/bin/kata-runtime", "/old/nvidia")
    result = dj.merge(text, NVIDIA)
    assert result.keys_set == ["runtimes.nvidia"]
    assert result.text.startswith(
        '{\n    "log-driver": "json-file",\n    "runtimes": {\n        "nvidia": {\n'
    )
    assert json.loads(result.text)["runtimes"]["nvidia"] == NVIDIA["runtimes"]["nvidia"]
    assert "/old/nvidia" not in result.text


def test_same_settings_again_change_nothing():
    first = dj.merge(USER_2, OWNED).text
    again = dj.merge(first, OWNED)
    assert again == dj.Merge(first, False, [], [])


def test_equal_values_in_another_key_order_are_not_a_change():
    text = '{"runtimes": {"nvidia": {"runtimeArgs": [], "path": "nvidia-container-runtime"}}}'
    assert not dj.merge(text, NVIDIA).changed


def test_true_is_not_one():
    assert dj.merge('{"live-restore": 1}', {"live-restore": True}).changed


@pytest.mark.parametrize(
    "remove, expected",
    [
        (["data-root"], ["registry-mirrors", "log-opts", "storage-driver"]),
        (["storage-driver"], ["data-root", "registry-mirrors", "log-opts"]),
        (["registry-mirrors", "log-opts"], ["data-root", "storage-driver"]),
        (["data-root", "registry-mirrors"], ["log-opts", "storage-driver"]),
    ],
)
def test_remove_cuts_only_the_listed_keys(remove, expected):
    result = dj.merge(USER_2, {}, remove)
    assert result.keys_removed == remove
    assert list(json.loads(result.text)) == expected
    kept = [line for line in USER_2.splitlines() if any(f'"{k}"' in line for k in expected)]
    assert [line.rstrip(",") for line in result.text.splitlines()[1:-1]] == [k.rstrip(",") for k in kept]


def test_removing_every_key_then_adding_renders_the_object():
    result = dj.merge('{\n    "default-runtime": "nvidia"\n}\n', {"debug": True}, ["default-runtime"])
    assert result.text == '{\n    "debug": true\n}\n'
    assert dj.merge('{"a": 1}', {}, ["a"]).text == "{}"


def test_remove_of_an_absent_key_is_no_change():
    assert dj.merge(USER_2, {}, ["default-runtime"]) == dj.Merge(USER_2, False, [], [])


def test_a_key_both_set_and_removed_is_refused():
    with pytest.raises(dj.DaemonJsonError, match="default-runtime both set and removed"):
        dj.merge(USER_2, OWNED, ["default-runtime"])


@pytest.mark.parametrize("text", ["", "\n", "{}", "{}\n", "{\n}\n"])
def test_empty_file_counts_as_an_empty_object(text):
    result = dj.merge(text, {"debug": True})
    assert result.text.rstrip("\n") == '{\n  "debug": true\n}'
    assert result.text.endswith("\n") == (text != "{}")


def test_a_new_file_is_two_space_indented_with_a_newline():
    assert dj.merge("", {"debug": True}).text == '{\n  "debug": true\n}\n'


def test_missing_trailing_newline_stays_missing():
    text = USER_2.rstrip("\n")
    assert not dj.merge(text, OWNED).text.endswith("\n")


def test_crlf_file_keeps_crlf():
    text = USER_2.replace("\n", "\r\n")
    out = dj.merge(text, OWNED).text
    assert out.count("\r\n") == out.count("\n")


def test_non_ascii_stays_literal_and_duplicates_collapse():
    out = dj.merge('{\n  "labels": ["étage=2"]\n}\n', {"debug": True}).text
    assert '"étage=2"' in out
    dup = dj.merge('{\n    "debug": false,\n    "debug": false\n}\n', {"bip": "10.1.0.1/16"})
    assert dup.text == '{\n    "debug": false,\n    "bip": "10.1.0.1/16"\n}\n'


def test_invalid_json_names_path_line_and_column():
    with pytest.raises(dj.DaemonJsonError) as exc:
        dj.parse('{\n  "debug": true\n  "bip": "x"\n}\n', "/etc/docker/daemon.json")
    err = exc.value
    assert (err.path, err.line, err.column) == ("/etc/docker/daemon.json", 3, 3)
    assert str(err).startswith(
        "/etc/docker/daemon.json is not valid JSON: Expecting ',' delimiter: line 3 column 3"
    )
    assert "left unchanged" in str(err)


@pytest.mark.parametrize(
    "text, kind", [('["a"]', "array"), ('"x"', "string"), ("null", "null"), ("3", "number")]
)
def test_top_level_not_an_object_is_refused(text, kind):
    with pytest.raises(dj.DaemonJsonError, match=f"daemon.json holds a JSON {kind} at the top level"):
        dj.merge(text, OWNED)


# --- the file ---------------------------------------------------------------------------------------


def test_update_writes_keeps_mode_and_backs_up_the_old_bytes(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text(USER_4)
    os.chmod(path, 0o600)
    done = dj.update(str(path), OWNED)
    assert done["changed"] and done["before"] == USER_4
    assert path.read_text() == done["after"] == dj.merge(USER_4, OWNED).text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    backup = done["backup_file"]
    assert backup.startswith(str(path) + ".") and backup.endswith(".gpufleet-bak")
    assert Path(backup).read_text(encoding="utf-8") == USER_4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.json", os.path.basename(backup)]


def test_second_update_leaves_the_file_and_makes_no_backup(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text(USER_2)
    dj.update(str(path), OWNED)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    done = dj.update(str(path), OWNED)
    assert not done["changed"] and done["backup_file"] is None
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert len(list(tmp_path.glob("*.gpufleet-bak"))) == 1


def test_check_mode_writes_nothing(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text(USER_2)
    done = dj.update(str(path), OWNED, check=True)
    assert done["changed"] and done["after"] != USER_2 and done["backup_file"] is None
    assert path.read_text() == USER_2 and list(tmp_path.iterdir()) == [path]


def test_missing_file_and_directory_are_created(tmp_path):
    path = tmp_path / "etc" / "docker" / "daemon.json"
    done = dj.update(str(path), OWNED)
    assert done["changed"] and done["before"] == "" and done["backup_file"] is None
    assert json.loads(path.read_text()) == OWNED and path.read_text().endswith("}\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755


def test_invalid_file_is_not_touched(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text('{"debug": true,}\n')
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    # The position is the json module's own (Python 3.13 reports a trailing comma one column earlier).
    try:
        json.loads(before)
    except ValueError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
    with pytest.raises(dj.DaemonJsonError, match=rf"daemon.json is not valid JSON: .*{where}") as raised:
        dj.update(str(path), OWNED)
    assert raised.value.line == 1 and raised.value.column in (15, 16)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert list(tmp_path.iterdir()) == [path]


def test_a_symlinked_file_stays_a_link(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("{}\n")
    link = tmp_path / "daemon.json"
    link.symlink_to(target)
    done = dj.update(str(link), {"debug": True})
    assert link.is_symlink() and json.loads(target.read_text()) == {"debug": True}
    assert done["backup_file"].startswith(str(target) + ".")


def test_backup_names_never_collide(tmp_path):
    path = str(tmp_path / "daemon.json")
    first = dj.backup_name(path, now=0)
    open(first, "w").close()
    assert dj.backup_name(path, now=0) == first.replace(".gpufleet-bak", "-1.gpufleet-bak")


def test_edits_agree_with_a_fresh_render_on_random_files():
    """Seeded random files in each style: the edited text is valid JSON holding exactly the merged
    object in order, is byte-identical to json.dumps of it in the file's style, and a second merge
    changes nothing."""
    rnd = random.Random(15)
    keys = ["a", "b", "runtimes", "log-opts", "dns", "é", "default-runtime"]

    def value(depth=0):
        pick = rnd.randrange(6 if depth < 2 else 5)
        if pick == 5:
            return {k: value(depth + 1) for k in rnd.sample(keys, rnd.randrange(4))}
        return [1, True, "s", None, [1, "x"]][pick]

    styles = [dict(indent=2), dict(indent=4), dict(indent="\t"), dict(separators=(",", ":")), dict()]
    for _ in range(400):
        current = {k: value() for k in rnd.sample(keys, 1 + rnd.randrange(4))}
        style = rnd.choice(styles)
        text = json.dumps(current, **style) + "\n"
        owned = {k: value() for k in rnd.sample(keys, rnd.randrange(3))}
        remove = [k for k in rnd.sample(keys, rnd.randrange(3)) if k not in owned]
        result = dj.merge(text, owned, remove)
        expected = dj.merged(current, owned, [k for k in remove if k in current])
        assert result.text == json.dumps(expected, **style) + "\n", (text, owned, remove)
        assert dj.merge(result.text, owned, remove) == dj.Merge(result.text, False, [], [])
