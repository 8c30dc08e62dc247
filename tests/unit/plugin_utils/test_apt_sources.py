"""apt_sources: one-line and deb822 APT source parsing, and picking the Debian mirror for a suite."""

from ansible_collections.gpufleet.cluster.plugins.plugin_utils.apt_sources import (
    debian_mirror,
    parse_deb822,
    parse_one_line,
)

# /etc/apt/sources.list.d/debian.sources as Debian 12's installer and cloud images write it, with the
# snapshot comments this build machine carries inside each stanza.
DEBIAN_SOURCES = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

ONE_LINE = (
    "# See sources.list(5)\n"
    "deb http://ftp.de.debian.org/debian/ bookworm main contrib non-free-firmware\n"
    "deb-src http://ftp.de.debian.org/debian/ bookworm main\n"
    "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    "http://security.debian.org/debian-security bookworm-security main   # security\n"
    "# deb http://old.example.org/debian bookworm main\n"
    "deb http://ftp.de.debian.org/debian/ bookworm-updates main\n"
)


# --- one-line -----------------------------------------------------------------------------------


def test_one_line_entries():
    assert parse_one_line(ONE_LINE) == [
        {
            "type": "deb",
            "uri": "http://ftp.de.debian.org/debian/",
            "suites": ["bookworm"],
            "components": ["main", "contrib", "non-free-firmware"],
        },
        {
            "type": "deb-src",
            "uri": "http://ftp.de.debian.org/debian/",
            "suites": ["bookworm"],
            "components": ["main"],
        },
        {
            "type": "deb",
            "uri": "http://security.debian.org/debian-security",
            "suites": ["bookworm-security"],
            "components": ["main"],
        },
        {
            "type": "deb",
            "uri": "http://ftp.de.debian.org/debian/",
            "suites": ["bookworm-updates"],
            "components": ["main"],
        },
    ]


def test_one_line_options_with_spaces_inside_brackets():
    entries = parse_one_line(
        "deb [ arch=amd64,arm64 lang=none ] https://mirror.example.net/debian bookworm main\n"
    )
    assert entries == [
        {
            "type": "deb",
            "uri": "https://mirror.example.net/debian",
            "suites": ["bookworm"],
            "components": ["main"],
        }
    ]


def test_one_line_skips_comments_blank_and_malformed_lines():
    text = (
        "\n   \n# deb http://x/debian bookworm main\ndeb\ndeb http://only-uri/debian\nrpm http://x el9 os\n"
    )
    assert parse_one_line(text) == []


# --- deb822 -------------------------------------------------------------------------------------


def test_deb822_two_stanzas_with_comments():
    assert parse_deb822(DEBIAN_SOURCES) == [
        {
            "type": "deb",
            "uri": "http://deb.debian.org/debian",
            "suites": ["bookworm", "bookworm-updates"],
            "components": ["main"],
        },
        {
            "type": "deb",
            "uri": "http://deb.debian.org/debian-security",
            "suites": ["bookworm-security"],
            "components": ["main"],
        },
    ]


def test_deb822_several_types_and_uris_expand():
    text = (
        "Types: deb deb-src\n"
        "URIs: http://a.example/debian http://b.example/debian\n"
        "Suites: bookworm\n"
        "Components: main non-free\n"
    )
    entries = parse_deb822(text)
    assert [(e["type"], e["uri"]) for e in entries] == [
        ("deb", "http://a.example/debian"),
        ("deb", "http://b.example/debian"),
        ("deb-src", "http://a.example/debian"),
        ("deb-src", "http://b.example/debian"),
    ]
    assert {tuple(e["components"]) for e in entries} == {("main", "non-free")}


def test_deb822_keys_case_insensitive_and_continuation_lines():
    text = (
        "types: deb\nuris: http://a.example/debian\nsuites: bookworm\n"
        "components: main\n contrib\n\tnon-free\n"
    )
    assert parse_deb822(text)[0]["components"] == ["main", "contrib", "non-free"]


def test_deb822_embedded_signed_by_key_does_not_break_parsing():
    text = (
        "Types: deb\n"
        "URIs: http://a.example/debian\n"
        "Suites: bookworm\n"
        "Components: main\n"
        "Signed-By:\n"
        " -----BEGIN PGP PUBLIC KEY BLOCK-----\n"
        " .\n"
        " mQINBGPL0BUBEADmW5NdOOHwPIJlgPu6JDcKw/NZJPR8lsD3K87ZM18gzyQZJD+w\n"
        " -----END PGP PUBLIC KEY BLOCK-----\n"
    )
    assert parse_deb822(text) == [
        {"type": "deb", "uri": "http://a.example/debian", "suites": ["bookworm"], "components": ["main"]}
    ]


def test_deb822_disabled_stanza_is_skipped():
    text = (
        "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n"
        "\n"
        "Types: deb\nURIs: http://enabled.example/debian\nSuites: bookworm\nComponents: main\nEnabled: yes\n"
    )
    assert [e["uri"] for e in parse_deb822(text)] == ["http://enabled.example/debian"]


def test_deb822_stanza_without_types_yields_nothing():
    assert parse_deb822("# only a comment\n\nURIs: http://a.example/debian\nSuites: bookworm\n") == []


# --- debian_mirror ------------------------------------------------------------------------------


def test_mirror_from_deb822_main_and_security():
    files = {"/etc/apt/sources.list.d/debian.sources": DEBIAN_SOURCES}
    assert debian_mirror(files, "bookworm") == "http://deb.debian.org/debian"
    assert debian_mirror(files, "bookworm-security") == "http://deb.debian.org/debian-security"


def test_mirror_from_one_line_strips_trailing_slash_and_ignores_deb_src():
    files = {"/etc/apt/sources.list": ONE_LINE}
    assert debian_mirror(files, "bookworm") == "http://ftp.de.debian.org/debian"
    assert debian_mirror(files, "bookworm-security") == "http://security.debian.org/debian-security"


def test_security_suite_does_not_answer_for_main_suite():
    files = {
        "/etc/apt/sources.list": "deb http://security.debian.org/debian-security bookworm-security main\n",
        "/etc/apt/sources.list.d/debian.sources": DEBIAN_SOURCES.split("\n\n")[0] + "\n",
    }
    assert debian_mirror(files, "bookworm") == "http://deb.debian.org/debian"


def test_mirror_needs_main_component():
    files = {
        "/etc/apt/sources.list": "deb http://nonfree-only.example/debian bookworm non-free\n"
        "deb http://full.example/debian bookworm main non-free\n"
    }
    assert debian_mirror(files, "bookworm") == "http://full.example/debian"


def test_sources_list_wins_over_sources_list_d():
    files = {
        "/etc/apt/sources.list.d/a-mirror.sources": "Types: deb\nURIs: http://d.example/debian\n"
        "Suites: bookworm\nComponents: main\n",
        "/etc/apt/sources.list": "deb http://list.example/debian bookworm main\n",
    }
    assert debian_mirror(files, "bookworm") == "http://list.example/debian"


def test_sources_list_d_read_in_name_order():
    files = {
        "/etc/apt/sources.list.d/zz.list": "deb http://zz.example/debian bookworm main\n",
        "/etc/apt/sources.list.d/aa.list": "deb http://aa.example/debian bookworm main\n",
    }
    assert debian_mirror(files, "bookworm") == "http://aa.example/debian"


def test_dot_sources_file_is_read_as_deb822_and_list_as_one_line():
    # The same deb822 text in a .list file is not one-line syntax and yields nothing.
    assert debian_mirror({"/etc/apt/sources.list.d/debian.list": DEBIAN_SOURCES}, "bookworm") is None
    assert debian_mirror({"/etc/apt/sources.list.d/debian.sources": DEBIAN_SOURCES}, "bookworm") is not None


def test_disabled_stanza_is_not_a_mirror():
    files = {
        "/etc/apt/sources.list.d/debian.sources": "Types: deb\nURIs: http://off.example/debian\n"
        "Suites: bookworm\nComponents: main\nEnabled: no\n"
    }
    assert debian_mirror(files, "bookworm") is None


def test_none_found():
    # The lab image's sources.list is only a comment; the other file serves another distribution.
    files = {
        "/etc/apt/sources.list": "# see sources.list.d/debian.sources\n",
        "/etc/apt/sources.list.d/nodesource.sources": "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\n"
        "Suites: nodistro\nComponents: main\n",
    }
    assert debian_mirror(files, "bookworm") is None
    assert debian_mirror({}, "bookworm") is None
