"""A real pip-made install, copied out of the running venv: its dist-info and every file its RECORD
lists, so tests of installs cut short start from what pip really writes (not a hand-made RECORD).

iniconfig is used: pytest depends on it, so every venv that runs these tests has it (the main venv
and `make newest`'s)."""

import importlib.metadata as md
import shutil
from pathlib import Path

NAME = "iniconfig"


def copy_real_install(site_packages: Path, name: str = NAME) -> dict:
    """Copy ``name``'s install into ``site_packages``; returns {"dist_info": dir name, "version",
    "file": a package file its RECORD gives a size (relative to site-packages)}."""
    dist = md.distribution(name)
    source = Path(dist.locate_file(""))
    sized = None
    for f in dist.files:
        src = source / f
        if not src.is_file() or src.suffix == ".pyc":
            continue
        dest = site_packages / f
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
        if sized is None and f.size and f.suffix == ".py":
            sized = str(f)
    dist_info = next(
        p.parent.name for p in (Path(str(f)) for f in dist.files) if p.parent.name.endswith(".dist-info")
    )
    assert sized, f"{name}'s RECORD lists no .py file with a size"
    return {"dist_info": dist_info, "version": dist.version, "file": sized}


def installed_site_packages() -> Path:
    """The site-packages of the venv running the tests (where iniconfig is installed)."""
    return Path(md.distribution(NAME).locate_file(""))
