"""Run an Ansible module's main() in-process: exit_json/fail_json raise instead of exiting.

Import the exceptions and the autouse fixture into a test module:
``from module_harness import AnsibleExitJson, AnsibleFailJson, _module_exits  # noqa: F401``
"""

import pytest
from ansible.module_utils import basic


class AnsibleExitJson(Exception):
    pass


class AnsibleFailJson(Exception):
    pass


def _exit_json(self, **kwargs):
    kwargs.setdefault("changed", False)
    raise AnsibleExitJson(kwargs)


def _fail_json(self, msg, **kwargs):
    kwargs.update(failed=True, msg=msg)
    raise AnsibleFailJson(kwargs)


@pytest.fixture(autouse=True)
def _module_exits(monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)
