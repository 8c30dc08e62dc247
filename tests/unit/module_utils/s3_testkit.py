"""A real local S3-compatible endpoint for the s3:// source tests: moto's server in a thread on
127.0.0.1 (a free port), with IAM authentication on, so a wrong secret key really fails the signature
check (SignatureDoesNotMatch), an unknown access key is InvalidAccessKeyId and a user without a
policy gets AccessDenied.

Needs boto3 and moto[server] (the dev extras); the test files importorskip them before importing
this file.
"""

import contextlib
import json
import logging
import socket
import urllib.request

import boto3
from botocore.config import Config
from moto.core.authorization import enable_iam_authentication
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
READ_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}],
}
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoS3:
    """``with MotoS3() as s3:`` - a local S3 endpoint; ``s3.options()`` are model_fetch's s3 options
    of a user who may read every object (``s3.reader``), ``s3.nobody`` a user without any policy."""

    def __init__(self):
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        self.url = None
        self._auth = None

    def __enter__(self):
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        # moto's backends are per process: start from nothing whichever test file ran before
        urllib.request.urlopen(urllib.request.Request(self.url + "/moto-api/reset", method="POST")).close()
        iam = boto3.client(
            "iam",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        self.admin = self._user(iam, "admin", ADMIN_POLICY)
        self.reader = self._user(iam, "model-reader", READ_POLICY)
        self.nobody = self._user(iam, "nobody", None)
        self._auth = enable_iam_authentication()
        self._auth.__enter__()
        return self

    def __exit__(self, *exc):
        if self._auth is not None:
            self._auth.__exit__(None, None, None)
        self.server.stop()

    @staticmethod
    def _user(iam, name, policy):
        iam.create_user(UserName=name)
        if policy is not None:
            iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}

    def options(self, user=None, **overrides):
        """The ``s3`` options of ``model_transfer.install`` (the reader's credentials by default)."""
        out = {"endpoint_url": self.url, "region": REGION}
        out.update(user or self.reader)
        out.update(overrides)
        return out

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.admin["access_key"],
            aws_secret_access_key=self.admin["secret_key"],
            config=Config(s3={"addressing_style": "path"}),
        )

    def upload(self, bucket, prefix, files):
        """Put ``files`` ({path: bytes}) under ``s3://bucket/prefix/``; returns that URL."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        for path, data in files.items():
            client.put_object(Bucket=bucket, Key=f"{prefix}/{path}", Body=data)
        return f"s3://{bucket}/{prefix}"
