"""The tail of a tool's output that a module reports when the tool fails."""

from ansible_collections.gpufleet.cluster.plugins.module_utils.tool_run import output_tail


def test_output_tail():
    assert output_tail("", "  \n") is None
    assert output_tail("err\n", "out\n") == "err\nout"
    assert output_tail("x" * 5000, max_chars=10) == "x" * 10
