"""``gpufleet lab ask``: one completion from the air-gapped lab's served model through its front, with
the lab's API key, and one request without a key - what ``make demo`` ends with.

The request runs on a node (``docker exec``; the lab's internal network has no route from here), the
key goes to it on stdin, never on a command line. Prints the answer, the HTTP statuses and the front's
audit line of the request (found by the X-Request-Id the front answered with).
"""

from __future__ import annotations

import json

from gpufleet.errors import GpufleetError
from gpufleet.lab import docker as dk
from gpufleet.lab import fleet, tiny_model

FRONT = "http://127.0.0.1:8080"
AUDIT = "/var/log/gpufleet/front-audit.log"
# On the node: the key from stdin, the status and X-Request-Id on the last two lines.
SCRIPT = r"""
set -eu
IFS= read -r key || true
hdr=$(mktemp); body=$(mktemp)
status=$(curl -s -m 120 -o "$body" -D "$hdr" -w '%{http_code}' ${key:+-H "Authorization: Bearer $key"} \
  -H 'Content-Type: application/json' --data-binary "$1" "$2/v1/completions")
cat "$body"; echo
echo "$status"
grep -i '^x-request-id:' "$hdr" | head -n1 | tr -d '\r' | cut -d' ' -f2
rm -f "$hdr" "$body"
"""


def _request(container: str, key: str, body: dict) -> tuple[int, str, str]:
    args = ("exec", "-i", container, "sh", "-c", SCRIPT, "ask", json.dumps(body), FRONT)
    out = dk.docker(*args, input=(key + "\n").encode())
    lines = out.rstrip("\n").split("\n")
    request_id = lines.pop() if lines and len(lines[-1]) == 32 else ""
    status = int(lines.pop()) if lines and lines[-1].isdigit() else 0
    return status, "\n".join(lines), request_id


def ask(
    name: str = fleet.DEFAULT_NAME, node: str = "node1", prompt: str = "The fleet is", tokens: int = 16
) -> dict:
    fleet.validate_name(name)
    # The lab and its node first: asking a lab that does not exist must not leave a key behind.
    hosts = [host for host, _role in fleet.current_hosts(name)]
    if not hosts:
        raise fleet.LabError(
            f"there is no lab {name!r} (no container carries its label): bring it up first"
            f" (gpufleet lab up --name {name}, or make demo); `gpufleet lab status` lists what runs"
        )
    if node not in hosts:
        raise fleet.LabError(f"lab {name!r} has no host {node!r}; its hosts: {', '.join(hosts)}")
    key_file, _digest = fleet.api_key(name, create=False)
    container = fleet.container_name(name, node)
    body = {"model": tiny_model.NAME, "prompt": prompt, "max_tokens": tokens, "temperature": 0}
    status, answer, request_id = _request(container, key_file.read_text().strip(), body)
    if status != 200:
        raise GpufleetError(
            f"the front on {container} answered {status} with the lab's key ({key_file}): {answer[:300]}; "
            "is the lab provisioned with a bundle that carries the lab engine (make demo)?"
        )
    refused, refusal, _ = _request(container, "", body)
    audit = ""
    if request_id:
        lines = dk.docker("exec", container, "grep", "-F", request_id, AUDIT, check=False)
        audit = lines.strip().splitlines()[-1] if lines.strip() else ""
    return {
        "text": json.loads(answer)["choices"][0]["text"],
        "status": status,
        "audit": audit,
        "refused_status": refused,
        "refusal": refusal,
        "key_file": str(key_file),
    }
