# Copyright: gpufleet developers
# Apache-2.0
"""APT source filters. The parsing lives in plugin_utils/apt_sources.py; each filter has the name
of the function it exposes and its own documentation (``<name>.yml`` next to this file)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.gpufleet.cluster.plugins.plugin_utils import apt_sources


def debian_mirror(files, suite):
    """``{path: content}`` of APT source files -> the mirror URI serving ``suite``."""
    if not isinstance(files, dict):
        raise AnsibleFilterError("debian_mirror expects a dict of file name -> content")
    return apt_sources.debian_mirror(files, suite)


class FilterModule:
    def filters(self):
        return {"debian_mirror": debian_mirror}
