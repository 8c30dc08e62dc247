"""Image entries of a bundle manifest carry the image ID machine-readably (``image_id``), for the
nodes' bundle_images module; ``origin`` keeps its human-readable form."""

from ansible_collections.gpufleet.cluster.plugins.module_utils import bundle_format
from ansible_collections.gpufleet.cluster.plugins.module_utils.bundle_images import image_file

from gpufleet.bundle import artifacts, build

REF = "registry.example.internal/llm/server:1.0"
ID = "sha256:" + "3f" * 32


def test_make_manifest_records_the_image_id_and_keeps_origin(tmp_path):
    out = tmp_path / "bundle"
    (out / "images").mkdir(parents=True)
    (out / artifacts.image_file(REF)).write_bytes(b"tar")
    prof = {
        "name": "lab",
        "target": {"os": "debian-12", "arch": "amd64", "python": "3.11"},
        "roles": [],
        "apt": {"packages": []},
        "images": [{"name": REF, "purpose": "server"}],
        "files": [],
    }
    manifest = build.make_manifest(out, prof, "A" * 40, 0, [], [], {REF: (ID, 3)})
    (entry,) = manifest["files"]
    assert entry["path"] == "images/registry.example.internal_llm_server_1.0.tar" == image_file(REF)
    assert entry["kind"] == "image" and entry["image_id"] == ID
    assert entry["origin"] == f"docker image {REF} ({ID})"
    assert bundle_format.validate_manifest(manifest) == manifest  # raises on an entry it refuses
