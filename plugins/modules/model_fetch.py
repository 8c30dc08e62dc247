#!/usr/bin/python
# Copyright: gpufleet developers
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_fetch
short_description: Fetch a signed model version into the node's model store, every chunk verified
version_added: 0.1.0
description:
  - Checks the signature of the model manifest O(manifest) against the pinned key O(fingerprint) with
    C(gpgv), exactly as M(gpufleet.cluster.bundle_verify) checks a bundle; a manifest that is unsigned,
    altered or signed by another key is refused before anything is fetched.
  - Fetches the files the store O(store) lacks from O(sources) (parallel ranged HTTP requests or S3
    ranged GetObject requests, spread over the sources), checks every chunk against the manifest as
    it lands and asks the next source for a chunk that arrives wrong or not at all. A file reaches
    its final name only when its whole sha256 matches; an interrupted fetch resumes from the chunks
    already verified.
  - Free disk space is checked before the first byte. Files unchanged from a version already in the
    store are not fetched again (the store is content-addressed).
  - With O(activate), points the model's C(current) link at the new version by an atomic rename; the
    version it replaced stays as C(previous) for an instant rollback. A failed fetch never changes
    C(current).
author:
  - gpufleet developers
options:
  manifest:
    description:
      - Path on the managed host of the model manifest written by C(gpufleet model add).
    type: path
    required: true
  signature:
    description:
      - Armored detached signature of O(manifest). Defaults to O(manifest) with C(.asc) appended.
    type: path
  keyring:
    description:
      - Public key (binary or armored) to check the signature with, such as the bundle's
        C(keys/gpufleet-bundle.gpg). It must be the key named by O(fingerprint).
    type: path
    required: true
  fingerprint:
    description:
      - Fingerprint of the trusted bundle signing key (40 hexadecimal characters; spaces and a C(0x)
        prefix are allowed), usually C(gpufleet_bundle_fingerprint).
    type: str
    required: true
  sources:
    description:
      - Base URLs (C(http://) or C(https://)) of the model directory, tried in turn for each chunk (
        the bastion, a mirror, or a peer node serving its store). The file C(a/b.json) is fetched
        from C(SOURCE/a/b.json). Credentials in a URL are never shown in messages.
      - C(s3://BUCKET/PREFIX) reads the object C(PREFIX/a/b.json) from S3 or S3-compatible storage
        (see O(s3_endpoint_url)); it needs boto3 on the managed host. Credentials do not belong in
        the URL; see O(s3_access_key).
      - A source that fails for a reason that holds for every chunk (wrong credentials, no such
        bucket, endpoint unreachable) is not asked again in that run.
      - May be empty when the store already holds every file of the version (a check that the signed
        manifest verifies and the version is complete, as the llm_serve role runs it in check mode);
        the task fails when something would have to be fetched.
    type: list
    elements: str
    default: []
  peers:
    description:
      - Base URLs of other nodes' model stores served read-only over HTTP (the model_store role's
        C(model_store_serve)), such as C(http://node2:8090). Each chunk is asked of the peers first,
        then of O(sources); a peer holds a file at C(PEER/objects/<sha256[:2]>/<sha256>) only once it
        is whole and verified, answers 404 otherwise, and the next server is asked. A peer that
        cannot be reached is not asked again in that run. The signed manifest decides whether the
        bytes are right, wherever they come from.
    type: list
    elements: str
    default: []
  spread_index:
    description:
      - This node's place (from 0) among the O(spread_count) nodes fetching the model together. Node
        I of N starts at the first file that begins I/N of the way into the bytes still to fetch, so
        the nodes start evenly apart;
        by the time a node reaches a file, the node that started there has it whole, and the bastion
        sends each file about once while the nodes trade the rest (O(engine=builtin)).
    type: int
    default: 0
  spread_count:
    description:
      - How many nodes fetch the model together (see O(spread_index)).
    type: int
    default: 1
  peer_wait:
    description:
      - Seconds to wait for a peer to hold a file another node of the fleet starts on (it fetches that
        file from the bastion), asking the peers again every second, before asking O(sources) for it.
        V(0) does not wait. Only with O(peers) and O(spread_count) above 1.
    type: int
    default: 0
  store:
    description:
      - Directory of the model store (created when absent).
    type: path
    default: /var/lib/gpufleet/model-store
  activate:
    description:
      - Point the model's C(current) link at this version once it is complete.
    type: bool
    default: true
  workers:
    description:
      - Chunks downloaded in parallel. With O(peers) and O(spread_count) > 1, the files other nodes
        fetch from the sources wait for a peer in as many workers again, so a file a peer finishes early
        is taken from it while this node's own files still come in.
    type: int
    default: 4
  timeout:
    description:
      - Seconds to wait for a source to answer one request.
    type: int
    default: 60
  rate_limit:
    description:
      - Cap on the download rate in bytes per second, over all parallel downloads together, to spare
        a shared uplink. V(0) means no cap.
    type: int
    default: 0
  engine:
    description:
      - What carries the bytes. V(builtin) is the collection's own parallel ranged fetch, described above.
      - V(aria2) runs C(aria2c) (Debian package C(aria2)) on a Metalink v4 made from the signed manifest,
        with every source as a mirror and the first one (the bastion) least preferred, so peers that
        already hold the model carry it; aria2 checks each chunk's sha256 as it lands and resumes an
        interrupted fetch. Every file is then checked again against the manifest before the store
        adopts it. Only C(http://) and C(https://) sources; O(rate_limit) does not apply, and
        O(workers) is the connections per source.
    type: str
    choices: [builtin, aria2]
    default: builtin
  s3_endpoint_url:
    description:
      - URL of S3-compatible storage (MinIO, Ceph RGW, ...) for the C(s3://) sources, such as
        C(https://minio.example:9000); requests then use path-style addressing. Unset means AWS S3.
    type: str
  s3_region:
    description:
      - Region of the C(s3://) sources' bucket. Unset means boto3's default (C(AWS_REGION), C(~/.aws/config)).
    type: str
  s3_access_key:
    description:
      - Access key ID for the C(s3://) sources. With O(s3_secret_key); when both are unset boto3's
        credential chain applies (C(AWS_ACCESS_KEY_ID) and C(AWS_SECRET_ACCESS_KEY), C(~/.aws/credentials),
        an instance or container role). Never logged or returned.
    type: str
  s3_secret_key:
    description:
      - Secret access key for O(s3_access_key). Never logged, returned or shown in an error.
    type: str
  s3_session_token:
    description:
      - Session token of temporary credentials (STS). Never logged or returned.
    type: str
attributes:
  check_mode:
    support: full
    description: Verifies the signature and reports what would be fetched and whether C(current) would change.
  diff_mode:
    support: none
notes:
  - Needs C(gpgv) on the managed host (Debian package C(gpgv), installed by default).
  - C(s3://) sources need boto3 on the managed host (Debian package C(python3-boto3), or
    C(pip install boto3)); without it an C(s3://) source is refused before anything is fetched and
    http(s) sources work as before. Errors from the storage name the bucket, the key, the error
    code and what to check, never a credential.
  - O(engine=aria2) needs C(aria2c) on the managed host (C(apt-get install aria2)); without it the task
    fails saying so. Its partial files stay in the store's C(.aria2-staging) directory for the next run.
  - One fetch at a time per store (a lock file, C(.gpufleet-lock)); a second one fails at once.
  - Each download thread holds one chunk in memory (64 MiB by default), so memory use is about
    O(workers) chunks.
  - The logic lives in the collection's C(model_manifest), C(model_store), C(model_transfer) and
    C(model_metalink) module utils, which the C(gpufleet model) command shares.
seealso:
  - module: gpufleet.cluster.bundle_verify
"""

EXAMPLES = r"""
- name: Fetch the model from the bastion and make it current
  gpufleet.cluster.model_fetch:
    manifest: /srv/gpufleet/bundle/files/models/llama-3.1-8b-1.model.json
    keyring: /srv/gpufleet/bundle/keys/gpufleet-bundle.gpg
    fingerprint: "{{ gpufleet_bundle_fingerprint }}"
    sources:
      - "http://{{ gpufleet_bastion }}/models/llama-3.1-8b/1"

- name: Stage the next version without serving it yet
  gpufleet.cluster.model_fetch:
    manifest: /tmp/llama-3.1-8b-2.model.json
    keyring: /etc/gpufleet/bundle-key.asc
    fingerprint: 2F173C5CB4120B0D1C028E34128F7BAC8776D15E
    sources:
      - http://bastion.example/models/llama-3.1-8b/2
      - http://node07.example:8090/llama-3.1-8b/current
    activate: false

- name: Fetch from S3-compatible storage, the bastion as the second source
  gpufleet.cluster.model_fetch:
    manifest: /srv/gpufleet/bundle/files/models/llama-3.1-8b-1.model.json
    keyring: /srv/gpufleet/bundle/keys/gpufleet-bundle.gpg
    fingerprint: "{{ gpufleet_bundle_fingerprint }}"
    sources:
      - s3://models/llama-3.1-8b/1
      - "http://{{ gpufleet_bastion }}/models/llama-3.1-8b/1"
    s3_endpoint_url: https://minio.example:9000
    s3_access_key: "{{ vault_models_access_key }}"
    s3_secret_key: "{{ vault_models_secret_key }}"
    rate_limit: 200000000
"""

RETURN = r"""
name:
  description: The model's name, from its manifest.
  returned: success
  type: str
  sample: llama-3.1-8b
version:
  description: The model version, from its manifest.
  returned: success
  type: str
  sample: "2"
path:
  description: The version's directory in the store (links to the verified files).
  returned: success
  type: str
  sample: /var/lib/gpufleet/model-store/models/llama-3.1-8b/versions/2
fetched:
  description: Paths of the files fetched (or, in check mode, that would be).
  returned: success
  type: list
  elements: str
  sample: [model-00002-of-00004.safetensors]
bytes:
  description: Bytes downloaded (in check mode, still to download).
  returned: success
  type: int
  sample: 4976698672
peer_bytes:
  description: Bytes the peers delivered (O(engine=builtin)); V(null) with O(engine=aria2).
  returned: success
  type: int
  sample: 3221225472
seconds:
  description:
    - Wall time of the task on the host, from the manifest's signature check to the last file in place
      (verification included; Ansible's own transport and start-up not included). With RV(bytes), the
      fetch's throughput.
  returned: success, not in check mode
  type: float
  sample: 12.4
resumed_bytes:
  description: Bytes verified by an earlier, interrupted run and not fetched again.
  returned: success
  type: int
  sample: 0
current:
  description: The version C(current) points at after the task (or would, in check mode).
  returned: success
  type: str
  sample: "2"
previous:
  description: The version C(current) pointed at before the task, or V(null).
  returned: success
  type: str
  sample: "1"
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_manifest import (
    BundleError,
    verify_signed,
)
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_s3 import OPTIONS as S3_OPTIONS
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_store import plan, version_dir
from ansible_collections.gpufleet.cluster.plugins.module_utils.model_transfer import (
    check_peers,
    check_sources,
    install,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            manifest=dict(type="path", required=True),
            signature=dict(type="path"),
            keyring=dict(type="path", required=True),
            fingerprint=dict(type="str", required=True),
            sources=dict(type="list", elements="str", default=[]),
            peers=dict(type="list", elements="str", default=[]),
            spread_index=dict(type="int", default=0),
            spread_count=dict(type="int", default=1),
            peer_wait=dict(type="int", default=0),
            store=dict(type="path", default="/var/lib/gpufleet/model-store"),
            activate=dict(type="bool", default=True),
            workers=dict(type="int", default=4),
            timeout=dict(type="int", default=60),
            rate_limit=dict(type="int", default=0),
            engine=dict(type="str", choices=["builtin", "aria2"], default="builtin"),
            s3_endpoint_url=dict(type="str"),
            s3_region=dict(type="str"),
            s3_access_key=dict(type="str", no_log=True),
            s3_secret_key=dict(type="str", no_log=True),
            s3_session_token=dict(type="str", no_log=True),
        ),
        required_together=[("s3_access_key", "s3_secret_key")],
        supports_check_mode=True,
    )
    p = module.params
    store = p["store"]
    started = time.monotonic()
    try:
        manifest, raw = verify_signed(
            p["manifest"],
            p["fingerprint"],
            p["keyring"],
            signature=p["signature"],
            gpgv=module.get_bin_path("gpgv") or "gpgv",
        )
        check_peers(p["peers"])
        todo = plan(store, manifest, raw)
        if todo["fetch"] and not p["sources"]:
            missing = [entry["path"] for entry in todo["fetch"]]
            raise BundleError(
                f"the store {store} lacks {len(missing)} file(s) of model {manifest['name']} "
                f"{manifest['version']} ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}) "
                "and no sources were given: place the model first (role model_store)"
            )
        if p["sources"]:
            check_sources(p["sources"])
    except (BundleError, OSError) as exc:
        module.fail_json(msg=str(exc))
    name, version = manifest["name"], manifest["version"]
    result = dict(name=name, version=version, path=version_dir(store, name, version), previous=todo["active"])
    if module.check_mode:
        result.update(
            changed=bool(todo["fetch"])
            or not todo["version_exists"]
            or (p["activate"] and todo["would_activate_change"]),
            fetched=[entry["path"] for entry in todo["fetch"]],
            bytes=todo["fetch_bytes"],
            resumed_bytes=todo["resumable_bytes"],
            current=version if p["activate"] else todo["active"],
        )
        module.exit_json(**result)
    try:
        done = install(
            store, manifest, raw, p["sources"], activate_it=p["activate"], workers=p["workers"],
            timeout=p["timeout"], rate_limit=p["rate_limit"] or None,
            s3={k: p["s3_" + k] for k in S3_OPTIONS}, engine=p["engine"],
            peers=p["peers"], spread=(p["spread_index"], p["spread_count"]), peer_wait=p["peer_wait"],
        )  # fmt: skip
    except (BundleError, OSError) as exc:
        module.fail_json(msg=str(exc), **result)
    result.update(
        changed=done["changed"],
        fetched=done["fetched"],
        bytes=done["bytes"],
        resumed_bytes=done["resumed_bytes"],
        peer_bytes=done.get("peer_bytes"),
        current=version if p["activate"] else todo["active"],
        seconds=round(time.monotonic() - started, 3),
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
