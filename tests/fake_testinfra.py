"""A testinfra host double for ``gpufleet.verify.collect``: one shell answers every command, whether
collect runs it over the connection (``host.run``) or the module ``verify_collect`` runs it on the host
(``host.ansible``).

``host.ansible("gpufleet.cluster.verify_collect", args)`` runs the module's real host code
(``module_utils/verify_state.collect``) on the JSON arguments collect passed, with only the process
boundary replaced: the module's ``run_command`` asks ``shell`` (a test double: no command is run), and
its fact parts (GPU, InfiniBand, network, serving) are the values a test gives in ``parts`` (an
Exception instance makes that part fail). A subclass answers commands by overriding ``shell``.
"""

from __future__ import annotations

import json

from ansible_collections.gpufleet.cluster.plugins.module_utils import verify_state

from gpufleet.verify.collect import MODULE, REACH_MARKER


class Out:
    """What testinfra's ``host.run`` returns."""

    def __init__(self, rc=0, stdout="", stderr=""):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


def _plain(value):
    """The argument JSON without Ansible's unsafe markers (``{"__ansible_unsafe": text}``)."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class _ModuleDouble:
    """The AnsibleModule methods verify_state uses: no ``timeout`` binary, commands to ``shell``."""

    def __init__(self, host):
        self.host = host

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return None

    def run_command(self, argv, **kwargs):
        assert argv[:2] == ["/bin/sh", "-c"], argv
        self.host.module_commands.append(argv[2])
        self.host.module_environ.append(kwargs.get("environ_update") or {})
        out = self.host.shell(argv[2])
        return out.rc, out.stdout, out.stderr


class FakeHost:
    """``parts``: {part: facts or Exception} (missing parts: None); ``module_error``: the module call
    fails with this message (the host has no Python, the module crashed)."""

    def __init__(self, parts=None, module_error=None):
        self.parts = dict(parts or {})
        self.module_error = module_error
        self.modules = []  # (name, args as JSON text) of each module call
        self.remote = []  # every command run over the connection (host.run), as sent
        self.module_commands = []  # every command the module ran on the host
        self.module_environ = []  # the environment each of them got

    def shell(self, cmd):
        """The host's answer to ``cmd``; this one fails every command (constructed)."""
        return Out(rc=1, stderr="constructed failure")

    def run(self, cmd):
        self.remote.append(cmd)
        if cmd == f"echo {REACH_MARKER}":
            return Out(stdout=REACH_MARKER + "\n")
        return self.shell(cmd)

    def args(self):
        """The arguments of the one verify_collect call, unsafe markers removed."""
        (call,) = [args for name, args in self.modules if name == MODULE]
        return _plain(json.loads(call))

    def ansible(self, name, args=None, check=True, **kwargs):
        self.modules.append((name, args))
        assert name == MODULE, f"collect called {name}: only {MODULE} is expected"
        if self.module_error:
            raise RuntimeError(self.module_error)
        a = _plain(json.loads(args))

        def part(name):
            def gather():
                value = self.parts.get(name)
                if isinstance(value, Exception):
                    raise value
                return value

            return gather

        result = verify_state.collect(
            _ModuleDouble(self),
            [(name, part(name)) for name in verify_state.PARTS],
            a.get("commands"),
            a.get("services", []),
            a.get("command_timeout", verify_state.COMMAND_TIMEOUT),
            a.get("command_timeouts"),
        )
        return dict(result, changed=False)
