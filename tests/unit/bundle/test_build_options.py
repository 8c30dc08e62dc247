"""`gpufleet bundle build --apt-rate-limit`: parsed strictly, handed to apt as its own Dl-Limit."""

import argparse
import subprocess
from pathlib import Path

import pytest

from gpufleet.bundle import aptrepo
from gpufleet.bundle.cli import parse_rate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500K", 512000),
        ("20M", 20 * 1024**2),
        ("1G", 1024**3),
        ("65536", 65536),
        ("1.5M", 1572864),
        ("2m/s", 2 * 1024**2),
    ],
)
def test_rates_in_bytes_per_second(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "fast", "10", "-5M", "5T"])
def test_nonsense_rates_are_refused_with_examples(text):
    with pytest.raises(argparse.ArgumentTypeError, match="such as 500K, 20M or 1G"):
        parse_rate(text)


class RecordingContainer:
    """Test double for the build container: records the apt command instead of running it."""

    def __init__(self):
        self.scripts = []

    def sh(self, script, check=True):
        self.scripts.append(script)
        return subprocess.CompletedProcess(script, 0, "", "")


def test_rate_limit_becomes_apt_dl_limit_in_kib(tmp_path: Path):
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "hello_2.10-3_amd64.deb").write_bytes(b"x")
    box = RecordingContainer()
    wanted = [{"file": "hello_2.10-3_amd64.deb", "size": 1}]
    aptrepo.download(box, ["hello"], pool, wanted, rate_limit=2 * 1024**2)
    assert "-o Acquire::http::Dl-Limit=2048 -o Acquire::https::Dl-Limit=2048 " in box.scripts[0]
    aptrepo.download(box, ["hello"], pool, wanted)
    assert "Dl-Limit" not in box.scripts[1]
