"""``gpufleet model fetch`` with an s3:// source: a real signed manifest, the real gpgv, moto's S3
server in a thread (IAM authentication on). The credentials come only from the environment, as they
do for users: the command has no flags for them."""

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("boto3", reason="boto3 is not installed: the s3:// source tests need the dev extras")
pytest.importorskip(
    "moto.server", reason="moto[server] is not installed: the s3:// tests need the dev extras"
)

from ansible_collections.gpufleet.cluster.plugins.module_utils import model_s3
from ansible_collections.gpufleet.cluster.plugins.module_utils import model_store as ms
from test_model_cli import FILES, add, home, model, pytestmark  # noqa: F401 (fixtures; gpg/gpgv skip)

from gpufleet.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "module_utils"))
from s3_testkit import REGION, MotoS3


@pytest.fixture(scope="module")
def s3():
    with MotoS3() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """``aws_env(user)``: that user's keys in AWS_*, and nothing else of this machine's AWS setup."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    def use(user):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", user["access_key"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", user["secret_key"])

    return use


@pytest.fixture
def s3_options(monkeypatch):
    """The options each S3Source is made with (what the CLI handed model_transfer.install)."""
    seen = []
    real = model_s3.S3Source.__init__

    def recording(self, source, options=None, timeout=60):
        seen.append(dict(options or {}, timeout=timeout))
        real(self, source, options, timeout)

    monkeypatch.setattr(model_s3.S3Source, "__init__", recording)
    return seen


def fetch_argv(model, home, tmp_path, source, *extra):  # noqa: F811 - fixture values passed on
    _rc, out = add(model, home, tmp_path)
    fpr = json.loads(out.read_text())["signing_key"]
    argv = ["model", "fetch", str(out), "--source", source, "--fingerprint", fpr]
    return [*argv, "--signing-home", str(home), "--store", str(tmp_path / "store"), *extra]


def test_fetches_from_s3_compatible_storage_with_credentials_from_the_environment(
    model,  # noqa: F811
    home,  # noqa: F811
    tmp_path,
    capsys,
    s3,
    aws_env,
    s3_options,
):
    source = s3.upload("models", "tiny/1", FILES)
    aws_env(s3.reader)
    argv = fetch_argv(model, home, tmp_path, source, "--s3-endpoint-url", s3.url, "--s3-region", REGION)
    assert main([*argv, "--timeout", "9"]) == 0
    out, err = capsys.readouterr()
    assert "versions/1: now current; 3 files fetched" in out
    # the flags reach the client; the credentials are left to boto3's chain, never passed or printed
    assert s3_options == [
        {"endpoint_url": s3.url, "region": REGION, "timeout": 9},
    ]
    assert s3.reader["secret_key"] not in out + err and s3.reader["access_key"] not in out + err
    current = tmp_path / "store/models/tiny/current"
    assert {rel: (current / rel).read_bytes() for rel in FILES} == FILES


def test_a_wrong_secret_key_in_the_environment_fails_in_one_line_without_showing_it(
    model,  # noqa: F811
    home,  # noqa: F811
    tmp_path,
    capsys,
    s3,
    aws_env,
):
    source = s3.upload("models", "tiny/1", FILES)
    secret = "Wrong/" + s3.reader["secret_key"][6:]
    aws_env(dict(s3.reader, secret_key=secret))
    argv = fetch_argv(model, home, tmp_path, source, "--s3-endpoint-url", s3.url, "--s3-region", REGION)
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith("gpufleet: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert "SignatureDoesNotMatch" in err and "s3://models/tiny/1/" in err
    assert secret not in out + err and s3.reader["access_key"] not in out + err
    assert ms.active_version(str(tmp_path / "store"), "tiny") is None
