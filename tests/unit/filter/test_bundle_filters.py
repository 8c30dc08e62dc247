"""gpufleet.cluster bundle filters (plugins/filter/bundle.py)."""

from types import SimpleNamespace

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.gpufleet.cluster.plugins.filter import bundle

# Called through the registry, by the names roles use.
flt = SimpleNamespace(**bundle.FilterModule().filters())


# --- pgp_fingerprint ------------------------------------------------------------------------------

# A real ed25519 key made by gpg 2.2.40 (--quick-gen-key 'test <t@example.invalid>' ed25519 sign never);
# gpg --with-colons --list-keys printed the fingerprint below for it.
TEST_KEY_FPR = "2F173C5CB4120B0D1C028E34128F7BAC8776D15E"
TEST_KEY_ASC = """-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEawF9DBYJKwYBBAHaRw8BAQdAsLq6TCecQpb2Xf/9NvEk0RtqLG5Jt475fO1s
GAZMEH60GHRlc3QgPHRAZXhhbXBsZS5pbnZhbGlkPoiPBBMWCAA4FiEELxc8XLQS
Cw0cAo40Eo97rId20V4FAmsBfQwCGwMFCwkIBwIGFQoJCAsCBBYCAwECHgECF4AA
CgkQEo97rId20V7j3QD2IJkl7VE4NUuJLI0E7JEih+Jx1cQwL+fVprLmBMRAKQD8
CI+V6RqEa2WKhkqluc/XZe4niO0tgroPFgWJ7YNdfAU=
=j97Q
-----END PGP PUBLIC KEY BLOCK-----
"""


def test_pgp_fingerprint_of_an_armored_key():
    assert flt.pgp_fingerprint(TEST_KEY_ASC) == TEST_KEY_FPR


def test_pgp_fingerprint_of_slurped_binary_key():
    # slurp returns the base64 of the file: the armor's body is exactly that for the binary export.
    slurped = "".join(TEST_KEY_ASC.splitlines()[2:7])
    assert flt.pgp_fingerprint(slurped) == TEST_KEY_FPR


def test_pgp_fingerprint_rejects_what_is_not_a_key():
    with pytest.raises(AnsibleFilterError, match="armored OpenPGP key"):
        flt.pgp_fingerprint("not a key at all!")
    # A user id packet is valid OpenPGP, but not a public key.
    with pytest.raises(AnsibleFilterError, match="pgp_fingerprint: this is a user id, not a public key"):
        flt.pgp_fingerprint("tBh0ZXN0IDx0QGV4YW1wbGUuaW52YWxpZD4=")
