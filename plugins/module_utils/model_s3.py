# Copyright: gpufleet developers
# Apache-2.0
"""Byte ranges of objects in S3-compatible object storage, for ``s3://BUCKET/PREFIX`` model sources.

The file ``a/b.json`` of a model is the object ``PREFIX/a/b.json`` in ``BUCKET``; each chunk is one
ranged GetObject (``Range: bytes=a-b``). Credentials are the ``access_key``/``secret_key``/
``session_token`` options when given, else boto3's own chain (environment, shared credentials and
config files, instance or container role). No message this file makes holds a credential: errors name
the bucket, the key, the error code and what to check, and every message is scrubbed of the
credentials given.

boto3 is optional on hosts (as in the amazon.aws collection): without it, http(s) sources work and an
``s3://`` source is refused with NEEDS_BOTO3 before anything is fetched.

Host code: Python >= 3.8; boto3/botocore only when installed.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit

from ansible_collections.gpufleet.cluster.plugins.module_utils.model_http import redact

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    HAS_BOTO3 = True
except ImportError:
    HAS_BOTO3 = False

NEEDS_BOTO3 = "the s3:// source needs boto3 on the host (python3-boto3 or pip install boto3)"
OPTIONS = ("endpoint_url", "region", "access_key", "secret_key", "session_token")
SECRET_OPTIONS = ("access_key", "secret_key", "session_token")
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")
_READ = 1024 * 1024
_CREDENTIALS = "s3_access_key/s3_secret_key (or boto3's chain: AWS_* variables, ~/.aws, instance role)"

# error code -> (what to check, whether it holds for every object of the source)
_HINTS = {
    "InvalidAccessKeyId": (
        f"the storage does not know the access key: check {_CREDENTIALS} and that s3_endpoint_url "
        "is the storage that issued it",
        True,
    ),
    "SignatureDoesNotMatch": ("the secret key does not match the access key: check s3_secret_key", True),
    "AccessDenied": (
        "these credentials may not read the object: check that a bucket or user policy grants "
        "s3:GetObject on the prefix, and the credentials in use",
        True,
    ),
    "AllAccessDisabled": ("all access to the bucket is disabled: ask its owner", True),
    "NoSuchBucket": (
        "there is no such bucket at this endpoint: check the bucket in the source URL, s3_endpoint_url "
        "and s3_region",
        True,
    ),
    "NoSuchKey": (
        "the object is missing: check the prefix in the source URL (the model's files must be under it "
        "with their relative paths)",
        False,
    ),
    "ExpiredToken": ("the session token has expired: renew s3_session_token", True),
    "InvalidToken": ("the session token is not valid: check s3_session_token", True),
    "AuthorizationHeaderMalformed": ("the request was signed for another region: set s3_region", True),
    "PermanentRedirect": (
        "the bucket is at another endpoint or region: set s3_endpoint_url or s3_region",
        True,
    ),
    "InvalidRange": ("the object is shorter than the manifest says: it is not this model version", False),
}


class S3Failure(Exception):
    """A chunk not read; ``fatal``: the reason holds for every object of the source (do not ask it again)."""

    def __init__(self, message, fatal=False):
        super().__init__(message)
        self.fatal = fatal


def split_source(source):
    """``(bucket, prefix)`` of ``s3://BUCKET/PREFIX`` (prefix ``""`` or ending in ``/``)."""
    parts = urlsplit(source)
    prefix = parts.path.strip("/")
    return parts.netloc, prefix + "/" if prefix else ""


def source_problem(source):
    """Why ``source`` cannot be read as an s3:// source (a message without credentials), or None."""
    parts = urlsplit(source)
    if "@" in parts.netloc:
        return "credentials do not belong in an s3:// URL: give s3_access_key and s3_secret_key"
    if not _BUCKET.fullmatch(parts.netloc):
        return "is not s3://BUCKET/PREFIX (the bucket name is missing or malformed)"
    if parts.query or parts.fragment:
        return "an s3:// source has no query string or fragment: give s3://BUCKET/PREFIX"
    if not HAS_BOTO3:
        return NEEDS_BOTO3
    return None


class S3Source:
    """One ``s3://BUCKET/PREFIX`` source: ``get(path, start, length, throttle)`` reads a byte range.

    ``options``: ``endpoint_url``, ``region``, ``access_key``, ``secret_key``, ``session_token``
    (None or empty: boto3's default). One client per source, made on first use and shared by the
    download threads (boto3 clients are thread-safe, sessions are not).
    """

    def __init__(self, source, options=None, timeout=60):
        if not HAS_BOTO3:
            raise S3Failure(NEEDS_BOTO3, fatal=True)
        self.bucket, self.prefix = split_source(source)
        self.options = {k: (options or {}).get(k) or None for k in OPTIONS}
        self.timeout = timeout
        self.secrets = [self.options[k] for k in SECRET_OPTIONS if self.options[k]]
        endpoint = self.options["endpoint_url"]
        self.endpoint = redact(endpoint) if endpoint else "AWS S3"
        self._client = None
        self._lock = threading.Lock()

    def name(self, path):
        """``s3://BUCKET/KEY`` of a model file, for messages."""
        return f"s3://{self.bucket}/{self.prefix}{path}"

    def scrub(self, text):
        """``text`` with every credential given replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def client(self):
        with self._lock:
            if self._client is None:
                opts = self.options
                session = boto3.session.Session(
                    aws_access_key_id=opts["access_key"],
                    aws_secret_access_key=opts["secret_key"],
                    aws_session_token=opts["session_token"],
                    region_name=opts["region"],
                )
                config = Config(
                    connect_timeout=self.timeout,
                    read_timeout=self.timeout,
                    retries={"max_attempts": 2, "mode": "standard"},
                    user_agent_extra="gpufleet-model-fetch",
                    # S3-compatible storage (MinIO, Ceph RGW, ...) at an endpoint wants path-style
                    s3={"addressing_style": "path"} if opts["endpoint_url"] else None,
                )
                self._client = session.client("s3", endpoint_url=opts["endpoint_url"], config=config)
            return self._client

    def get(self, path, start, length, throttle):
        """Bytes ``[start, start + length)`` of the file ``path``; S3Failure when not delivered."""
        where = self.name(path)
        try:
            return self._get(where, self.prefix + path, start, length, throttle)
        except S3Failure as exc:
            raise S3Failure(self.scrub(str(exc)), exc.fatal) from None
        except ClientError as exc:
            raise S3Failure(self.scrub(self._client_error(where, exc.response)), self._fatal(exc)) from None
        except (NoCredentialsError, PartialCredentialsError) as exc:
            message = f"{where}: {exc.__class__.__name__}: no usable credentials: give {_CREDENTIALS}"
            raise S3Failure(self.scrub(message), fatal=True) from None
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            message = (
                f"{where}: the endpoint {self.endpoint} could not be reached ({exc.__class__.__name__}): "
                "check s3_endpoint_url, the network and the firewall"
            )
            raise S3Failure(self.scrub(message), fatal=True) from None
        except (BotoCoreError, OSError, ValueError) as exc:
            raise S3Failure(self.scrub(f"{where}: {exc.__class__.__name__}: {exc}")) from None

    def _get(self, where, key, start, length, throttle):
        end = start + length - 1
        response = self.client().get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}")
        body = response["Body"]
        blocks, got = [], 0
        try:
            if start and not response.get("ContentRange"):
                raise S3Failure(f"{where}: the storage ignored the Range of a ranged GetObject")
            while got < length:
                block = body.read(min(_READ, length - got))
                if not block:
                    break
                throttle.take(len(block))
                blocks.append(block)
                got += len(block)
        finally:
            body.close()
        if got != length:
            raise S3Failure(f"{where}: {got} of {length} bytes (the storage went away?)")
        return b"".join(blocks)

    def _client_error(self, where, response):
        code = response.get("Error", {}).get("Code") or "an error"
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        hint = _HINTS.get(code, ("the storage refused the ranged GetObject",))[0]
        return f"{where}: {code} (HTTP {status}) from {self.endpoint}: {hint}"

    @staticmethod
    def _fatal(exc):
        code = exc.response.get("Error", {}).get("Code")
        if code in _HINTS:
            return _HINTS[code][1]
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (401, 403)
