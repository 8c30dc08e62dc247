"""module_utils.probe_output against recorded nccl-tests and perftest reports (tests/fixtures/probes).

Every fixture is a recording from a public repository or issue (see tests/fixtures/probes/PROVENANCE.md).
Inline strings below are marked CONSTRUCTED where they are not recordings.
"""

import pytest
from ansible_collections.gpufleet.cluster.plugins.module_utils.probe_output import (
    MB_PER_SEC_TO_GBPS,
    bus_bandwidth,
    ib_write_bw_commands,
    parse_ib_write_bw,
    parse_nccl_tests,
)
from conftest import FIXTURES

PROBES = FIXTURES / "probes"


def read(name):
    return (PROBES / name).read_text()


def test_nccl_tests_root_wrong_layout_h100_two_nodes():
    parsed = parse_nccl_tests(read("all_reduce_perf-h100-2x8-wrong-layout.txt"))
    assert parsed["layout"] == "wrong"
    assert parsed["ranks"] == 16
    assert len(parsed["rows"]) == 31  # -b 8 -e 8G -f 2
    assert parsed["rows"][0]["size"] == 8
    first = parsed["rows"][0]
    assert first["type"] == "float" and first["redop"] == "sum" and first["root"] == -1
    assert first["out_of_place"] == {
        "time_us": 135.8,
        "algbw_gbps": 0.0,
        "busbw_gbps": 0.0,
        "wrong": 0,
        "error": None,
    }
    largest = parsed["largest"]
    assert largest["size"] == 8589934592 and largest["count"] == 2147483648
    assert largest["out_of_place"]["busbw_gbps"] == 338.82
    assert largest["in_place"]["busbw_gbps"] == 337.35
    assert largest["in_place"]["time_us"] == 47743.0
    assert parsed["largest_busbw_gbps"] == 338.82
    assert parsed["max_busbw_gbps"] == 338.82
    assert parsed["avg_busbw_gbps"] == pytest.approx(70.742)
    assert parsed["wrong_total"] == 0
    assert parsed["out_of_bounds"] == 0


def test_recorded_busbw_matches_the_all_reduce_factor():
    # nccl-tests computed busbw = algbw * 2(n-1)/n for 16 ranks; the recording rounds to 2 decimals
    parsed = parse_nccl_tests(read("all_reduce_perf-h100-2x8-wrong-layout.txt"))
    for row in parsed["rows"]:
        for half in (row["out_of_place"], row["in_place"]):
            if half["algbw_gbps"] >= 1:
                assert bus_bandwidth(half["algbw_gbps"], 16) == pytest.approx(half["busbw_gbps"], abs=0.02)


def test_nccl_tests_old_error_layout():
    parsed = parse_nccl_tests(read("all_reduce_perf-2.10-error-layout-excerpt.txt"))
    assert parsed["layout"] == "error"
    assert parsed["ranks"] is None
    assert parsed["avg_busbw_gbps"] is None
    (row,) = parsed["rows"]
    assert row["size"] == 1073741824 and row["root"] is None and row["redop"] == "sum"
    assert row["out_of_place"]["busbw_gbps"] == 26.58
    assert row["out_of_place"]["error"] == 2e-06 and row["out_of_place"]["wrong"] is None
    assert parsed["largest_busbw_gbps"] == 26.63  # in-place was the better half
    assert parsed["wrong_total"] == 0


def test_nccl_tests_mpirun_tag_output_and_wrong_counts():
    # CONSTRUCTED from the recorded H100 table: Open MPI --tag-output prefixes, NCCL INFO noise,
    # a wrong count and a failed out-of-bounds line, as nccl-tests prints them
    lines = read("all_reduce_perf-h100-2x8-wrong-layout.txt").splitlines()
    tagged = []
    for line in lines:
        if line.startswith("  8589934592"):
            line = line[: line.rindex("0")] + "7"
        if line.startswith("# Out of bounds"):
            line = "# Out of bounds values : 1 FAILED"
        tagged.append("[1,0]<stdout>:" + line)
        if "Rank  3" in line:
            tagged.append("host:1:1 [0] NCCL INFO comm 0x7f rank 3 nranks 16 - Init COMPLETE")
    parsed = parse_nccl_tests("\n".join(tagged))
    assert len(parsed["rows"]) == 31
    assert parsed["ranks"] == 16
    assert parsed["largest"]["in_place"]["wrong"] == 7
    assert parsed["wrong_total"] == 7
    assert parsed["out_of_bounds"] == 1


@pytest.mark.parametrize("text", ["", "garbage\nno table here\n", "# Avg bus bandwidth    : nan\n"])
def test_nccl_tests_without_rows(text):
    parsed = parse_nccl_tests(text)
    assert parsed["rows"] == []
    assert parsed["largest"] is None
    assert parsed["largest_busbw_gbps"] is None
    assert parsed["max_busbw_gbps"] is None


@pytest.mark.parametrize(
    ("collective", "nranks", "factor"),
    [
        ("all_reduce", 8, 1.75),
        ("all_reduce", 16, 1.875),
        ("all_reduce", 2, 1.0),
        ("all_reduce", 1, 0.0),
        ("allreduce", 8, 1.75),
        ("all_reduce_perf", 8, 1.75),
        ("all_gather", 8, 0.875),
        ("reduce_scatter", 4, 0.75),
        ("alltoall", 8, 0.875),
        ("broadcast", 8, 1.0),
        ("reduce", 8, 1.0),
        ("sendrecv", 8, 1.0),
    ],
)
def test_bus_bandwidth_factors(collective, nranks, factor):
    assert bus_bandwidth(100.0, nranks, collective) == pytest.approx(100.0 * factor)


def test_bus_bandwidth_rejects_nonsense():
    with pytest.raises(ValueError, match="unknown collective"):
        bus_bandwidth(1.0, 8, "gossip")
    with pytest.raises(ValueError, match="nranks"):
        bus_bandwidth(1.0, 0)


def test_ib_write_bw_roce_four_qps_gbits():
    parsed = parse_ib_write_bw(read("ib_write_bw-roce-4qp-gbits.txt"))
    assert parsed["unit"] == "Gb/sec"
    assert parsed["rows"] == [
        {
            "bytes": 65536,
            "iterations": 20000,
            "bw_peak": 98.01,
            "bw_average": 98.01,
            "msg_rate_mpps": 0.186932,
        }
    ]
    assert parsed["bw_average_gbps"] == 98.01
    assert parsed["peak_measured"] is True
    assert parsed["test"] == "RDMA_Write BW Test"
    assert parsed["device"] == "mlx5_5"
    assert parsed["qps"] == 4
    assert parsed["link_type"] == "Ethernet"
    assert parsed["transport"] == "IB"
    assert parsed["connection"] == "RC"
    assert parsed["mtu"] == 4096


def test_ib_write_bw_duration_run_reports_no_peak():
    parsed = parse_ib_write_bw(read("ib_write_bw-postlist-duration-gbits.txt"))
    assert parsed["unit"] == "Gb/sec"
    assert parsed["bw_average_gbps"] == 0.48
    assert parsed["bw_peak_gbps"] == 0.0
    assert parsed["peak_measured"] is False
    assert parsed["rows"][0]["iterations"] == 224958464
    assert parsed["device"] == "ib0"
    assert parsed["test"] == "RDMA_Write Post List BW Test"


def test_perftest_mb_per_sec_is_mebibytes_converted_to_gbps():
    parsed = parse_ib_write_bw(read("ib_read_bw-all-sizes-mbytes-excerpt.txt"))
    assert parsed["unit"] == "MB/sec"
    assert [r["bytes"] for r in parsed["rows"]] == [2, 4, 8]
    # the last row (largest message) is the result; 19.50 MiB/s = 0.1636 Gb/s
    assert parsed["bw_average_gbps"] == pytest.approx(19.50 * 1048576 * 8 / 1e9)
    assert pytest.approx(0.008388608) == MB_PER_SEC_TO_GBPS
    assert parsed["device"] == "mlx5_1" and parsed["link_type"] == "IB"


def test_ib_write_bw_cpu_frequency_warning_inside_the_table():
    # CONSTRUCTED: perftest prints this warning between header and row when -F is not given
    text = (
        " #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]\n"
        "Conflicting CPU frequency values detected: 1500.000000 != 3300.016000. CPU Frequency is not max.\n"
        " 65536      560845           0.00               98.02                0.186950\n"
    )
    parsed = parse_ib_write_bw(text)
    assert parsed["bw_average_gbps"] == 98.02
    assert len(parsed["rows"]) == 1


@pytest.mark.parametrize(
    "text", ["", "ib_write_bw: command not found", " Couldn't connect to 10.0.0.1:18515\n"]
)
def test_ib_write_bw_without_result(text):
    parsed = parse_ib_write_bw(text)
    assert parsed["rows"] == []
    assert parsed["bw_average_gbps"] is None
    assert parsed["peak_measured"] is False


def test_ib_write_bw_commands():
    cmds = ib_write_bw_commands("mlx5_0", port=1, server_address="10.0.0.2", size=65536, duration=5, qps=2)
    assert cmds["server"] == [
        "ib_write_bw", "-d", "mlx5_0", "-i", "1", "-s", "65536", "-D", "5", "-q", "2", "-F", "--report_gbits",
    ]  # fmt: skip
    assert cmds["client"] == [*cmds["server"], "10.0.0.2"]
    assert ib_write_bw_commands("mlx5_1")["client"] is None
    roce = ib_write_bw_commands("mlx5_1", gid_index=3, tcp_port=18516)["server"]
    assert roce[-4:] == ["-x", "3", "-p", "18516"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"device": ""},
        {"device": "mlx5_0; rm -rf /"},
        {"device": "mlx5_0", "duration": 0},
        {"device": "m", "qps": 0},
    ],
)
def test_ib_write_bw_commands_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        ib_write_bw_commands(**kwargs)
