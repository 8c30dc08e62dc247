"""TEST DOUBLE for the docker CLI, installed by test_bundle_images.py as ``docker`` in a temporary
``fake-docker-bin`` directory put first on PATH. It is not Docker: it keeps its images in the JSON
file named by $FAKE_DOCKER_STATE and logs every call there, answering only what bundle_images asks.

An "image tarball" for it is JSON ``{"id": "sha256:...", "tags": ["name:tag", ...]}``.
"""

import json
import os
import sys

STATE = os.environ["FAKE_DOCKER_STATE"]


def main(argv):
    with open(STATE) as handle:
        state = json.load(handle)
    state["calls"].append(argv)
    rc = 0
    if argv[:4] == ["image", "inspect", "--format", "{{.Id}}"]:
        name = argv[4]
        found = state["tags"].get(name) or (name if name in state["ids"] else None)
        if found:
            print(found)
        else:
            print(f"Error response from daemon: No such image: {name}", file=sys.stderr)
            rc = 1
    elif argv[:2] == ["load", "--input"]:
        try:
            with open(argv[2]) as handle:
                image = json.load(handle)
        except ValueError:
            print("Error: archive/tar: invalid tar header", file=sys.stderr)
            rc = 1
        else:
            state["ids"] = sorted(set(state["ids"]) | {image["id"]})
            for tag in image["tags"]:
                state["tags"][tag] = image["id"]
                print(f"Loaded image: {tag}")
            if not image["tags"]:
                print(f"Loaded image ID: {image['id']}")
    else:
        print(f"fake docker: {' '.join(argv)} is not something the test double answers", file=sys.stderr)
        rc = 2
    with open(STATE, "w") as handle:
        json.dump(state, handle)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
