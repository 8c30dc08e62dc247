"""The lab image trusts what the build host trusts beyond Debian's CA set (a site/proxy CA)."""

from gpufleet.lab import image


def pem(body):
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----"


def test_only_certificates_missing_from_debian_set_are_copied(tmp_path):
    shipped = tmp_path / "share" / "mozilla"
    shipped.mkdir(parents=True)
    (shipped / "A.crt").write_text(pem("AAAA") + "\n")
    (shipped / "B.crt").write_text(pem("BBBB") + "\n")
    bundle = tmp_path / "ca-certificates.crt"
    # Same certificates, different line endings/indentation, plus two site CAs.
    bundle.write_text(pem("AAAA") + "\r\n" + pem("  BBBB") + "\n" + pem("SITE2") + "\n" + pem("SITE1") + "\n")
    extra = image.host_extra_cas(str(bundle), str(tmp_path / "share"))
    assert extra == sorted([pem("SITE1"), pem("SITE2")])


def test_missing_bundle_means_no_extra_certificates(tmp_path):
    assert image.host_extra_cas(str(tmp_path / "absent.crt"), str(tmp_path)) == []


def test_recipe_changes_when_the_site_ca_set_changes(monkeypatch):
    mirrors = {"main": "http://mirror.invalid/debian", "security": ""}
    monkeypatch.setattr(image, "host_extra_cas", lambda: [])
    plain = image.recipe_hash(image.recipe(mirrors))
    monkeypatch.setattr(image, "host_extra_cas", lambda: [pem("SITE")])
    assert image.recipe_hash(image.recipe(mirrors)) != plain
