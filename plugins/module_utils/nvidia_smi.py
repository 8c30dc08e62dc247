# Copyright: gpufleet developers
# Apache-2.0
"""Parse ``nvidia-smi -q -x`` (the XML query report), and the plain ``nvidia-smi -q`` text, into plain data.

Host code: stdlib only, Python >= 3.8 (Ansible ships it to hosts). Used by the ``gpufleet.cluster.gpu_facts``
module and by the verification checks; the layout differences between driver branches are handled here, once:

- ECC counters: drivers up to the R510 era write per-location counters under ``<single_bit>`` /
  ``<double_bit>`` with a ``<total>``; later ones write ``<sram_correctable>``,
  ``<dram_correctable>``, ``<sram_uncorrectable>`` (R550+ split it into ``_parity`` and
  ``_secded``) and ``<dram_uncorrectable>``.
- Clock throttling: ``<clocks_throttle_reasons>`` (older) was renamed ``<clocks_event_reasons>``.
- Power: ``<power_readings>`` (older) became ``<gpu_power_readings>``; ``<power_draw>`` became
  ``<instant_power_draw>`` / ``<average_power_draw>`` in recent drivers.

Values nvidia-smi prints as ``N/A``, ``[N/A]``, ``Not Supported`` or ``[Not Supported]`` become None.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

NOT_AVAILABLE = frozenset({"", "n/a", "[n/a]", "not supported", "[not supported]"})

_NUMBER = re.compile(r"^[-+]?\d+(?:\.\d+)?")
_PCI_BUS_ID = re.compile(r"^([0-9a-fA-F]+):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")
_REASON_PREFIXES = ("clocks_event_reason_", "clocks_throttle_reason_")


class NvidiaSmiParseError(ValueError):
    """``nvidia-smi -q -x`` output that is not a well-formed <nvidia_smi_log> document."""


def clean(value):
    """Stripped text, or None for empty/``N/A``/``Not Supported`` values."""
    if value is None:
        return None
    text = value.strip()
    return None if text.lower() in NOT_AVAILABLE else text


def to_int(value):
    """Leading integer of ``"81920 MiB"``, ``"16x"``, ``"4"``; None when absent or not a number."""
    text = clean(value)
    if text is None:
        return None
    match = _NUMBER.match(text)
    return int(float(match.group(0))) if match else None


def to_float(value):
    """Leading number of ``"67.03 W"``; None when absent or not a number."""
    text = clean(value)
    if text is None:
        return None
    match = _NUMBER.match(text)
    return float(match.group(0)) if match else None


def to_bool(value, true=("enabled", "yes", "active", "on"), false=("disabled", "no", "not active", "off")):
    """True/False for Enabled/Disabled, Yes/No, Active/Not Active; None otherwise."""
    text = clean(value)
    if text is None:
        return None
    lowered = text.lower()
    if lowered in true:
        return True
    if lowered in false:
        return False
    return None


def normalize_pci_bus_id(value):
    """``00000000:17:00.0`` (nvidia-smi) -> ``0000:17:00.0`` (sysfs/lspci form), lower case.

    The domain keeps at least four hex digits (larger domains, e.g. VMD's ``10000``, stay as they
    are). Returns the cleaned input unchanged when it is not a bus id.
    """
    text = clean(value)
    if text is None:
        return None
    match = _PCI_BUS_ID.match(text)
    if not match:
        return text.lower()
    domain, bus, device, function = match.groups()
    return f"{int(domain, 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{function}"


def device_id_from_smi(value):
    """``233010DE`` (nvidia-smi's <pci_device_id>: device then vendor) -> ``0x2330``; else None."""
    text = clean(value)
    if text is None or not re.fullmatch(r"[0-9a-fA-F]{8}", text):
        return None
    return f"0x{int(text[:4], 16):04x}"


def _find(elem, path):
    if elem is None:
        return None
    return elem.find(path)


def _text(elem, path):
    node = _find(elem, path)
    return None if node is None else clean(node.text)


def _first_text(elem, *paths):
    for path in paths:
        value = _text(elem, path)
        if value is not None:
            return value
    return None


def _sum(values):
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _ecc_counts(section):
    """``{"correctable", "uncorrectable"}`` totals for a <volatile> or <aggregate> element."""
    if section is None:
        return {"correctable": None, "uncorrectable": None}
    if section.find("single_bit") is not None or section.find("double_bit") is not None:
        # Older layout: per-location counters with a <total>.
        return {
            "correctable": to_int(_text(section, "single_bit/total")),
            "uncorrectable": to_int(_text(section, "double_bit/total")),
        }
    correctable = _sum(to_int(_text(section, tag)) for tag in ("sram_correctable", "dram_correctable"))
    uncorrectable = _sum(
        to_int(_text(section, tag))
        for tag in (
            "sram_uncorrectable",
            "sram_uncorrectable_parity",
            "sram_uncorrectable_secded",
            "dram_uncorrectable",
        )
    )
    return {"correctable": correctable, "uncorrectable": uncorrectable}


def _ecc_errors(gpu):
    errors = gpu.find("ecc_errors")
    return {
        "volatile": _ecc_counts(_find(errors, "volatile")),
        "aggregate": _ecc_counts(_find(errors, "aggregate")),
    }


def _ecc_split_counts(section):
    """SRAM and DRAM counts kept apart (newer layout); None where the driver does not split them."""
    if section is None:
        return None
    counts = {
        "sram_correctable": to_int(_text(section, "sram_correctable")),
        "sram_uncorrectable": _sum(
            to_int(_text(section, tag))
            for tag in ("sram_uncorrectable", "sram_uncorrectable_parity", "sram_uncorrectable_secded")
        ),
        "dram_correctable": to_int(_text(section, "dram_correctable")),
        "dram_uncorrectable": to_int(_text(section, "dram_uncorrectable")),
    }
    return counts if any(v is not None for v in counts.values()) else None


def _ecc_split(gpu):
    """``{"volatile", "aggregate": SRAM/DRAM counts or None, "sram_threshold_exceeded": bool or None}``.

    The aggregate (lifetime) counts survive a reboot; R535+ drivers also flag when the SRAM error
    count crossed the threshold NVIDIA sets for the board (``<sram_threshold_exceeded>``).
    """
    errors = gpu.find("ecc_errors")
    return {
        "volatile": _ecc_split_counts(_find(errors, "volatile")),
        "aggregate": _ecc_split_counts(_find(errors, "aggregate")),
        "sram_threshold_exceeded": to_bool(_text(errors, "aggregate/sram_threshold_exceeded")),
    }


def _retired_pages(gpu):
    node = gpu.find("retired_pages")
    if node is None:
        return None
    pages = {
        "single_bit": to_int(_text(node, "multiple_single_bit_retirement/retired_count")),
        "double_bit": to_int(_text(node, "double_bit_retirement/retired_count")),
        "pending": to_bool(_first_text(node, "pending_retirement", "pending_blacklist")),
    }
    return pages if any(v is not None for v in pages.values()) else None


def _remapped_rows(gpu):
    node = gpu.find("remapped_rows")
    if node is None:
        return None
    rows = {
        "correctable": to_int(_text(node, "remapped_row_corr")),
        "uncorrectable": to_int(_text(node, "remapped_row_unc")),
        "pending": to_bool(_text(node, "remapped_row_pending")),
        "failure": to_bool(_text(node, "remapped_row_failure")),
    }
    return rows if any(v is not None for v in rows.values()) else None


def _clock_event_reasons(gpu):
    node = gpu.find("clocks_event_reasons")
    if node is None:
        node = gpu.find("clocks_throttle_reasons")
    reasons = {}
    if node is not None:
        for child in node:
            name = child.tag
            for prefix in _REASON_PREFIXES:
                if name.startswith(prefix):
                    name = name[len(prefix) :]
                    break
            reasons[name] = to_bool(child.text)
    active = sorted(name for name, value in reasons.items() if value)
    return reasons, active


def _pcie(gpu):
    link = _find(gpu, "pci/pci_gpu_link_info")
    return {
        "gen_current": to_int(_text(link, "pcie_gen/current_link_gen")),
        "gen_max": to_int(_text(link, "pcie_gen/max_link_gen")),
        "width_current": to_int(_text(link, "link_widths/current_link_width")),
        "width_max": to_int(_text(link, "link_widths/max_link_width")),
    }


def _power(gpu):
    readings = gpu.find("gpu_power_readings")
    if readings is None:
        readings = gpu.find("power_readings")
    return {
        "draw_w": to_float(_first_text(readings, "power_draw", "instant_power_draw", "average_power_draw")),
        "limit_w": to_float(
            _first_text(readings, "current_power_limit", "enforced_power_limit", "power_limit")
        ),
    }


def _power_limits(gpu):
    readings = gpu.find("gpu_power_readings")
    if readings is None:
        readings = gpu.find("power_readings")
    return {
        "default_w": to_float(_text(readings, "default_power_limit")),
        "max_w": to_float(_text(readings, "max_power_limit")),
    }


def _fabric(gpu):
    """NVSwitch/NVLink fabric registration (R535+): state Not Started/In Progress/Completed, status."""
    return {"state": _text(gpu, "fabric/state"), "status": _text(gpu, "fabric/status")}


def _mig_device_count(gpu):
    devices = gpu.find("mig_devices")
    return 0 if devices is None else len(devices.findall("mig_device"))


def parse_gpu(gpu, index):
    """One <gpu> element as a dict (see ``parse_nvidia_smi_xml``)."""
    reasons, active = _clock_event_reasons(gpu)
    return {
        "index": index,
        "minor_number": to_int(_text(gpu, "minor_number")),
        "name": _text(gpu, "product_name"),
        "brand": _text(gpu, "product_brand"),
        "architecture": _text(gpu, "product_architecture"),
        "uuid": _text(gpu, "uuid"),
        "serial": _text(gpu, "serial"),
        "vbios_version": _text(gpu, "vbios_version"),
        "pci_bus_id": normalize_pci_bus_id(_text(gpu, "pci/pci_bus_id") or gpu.get("id")),
        "device_id": device_id_from_smi(_text(gpu, "pci/pci_device_id")),
        "persistence_mode": to_bool(_text(gpu, "persistence_mode")),
        "mig_mode": {
            "current": to_bool(_text(gpu, "mig_mode/current_mig")),
            "pending": to_bool(_text(gpu, "mig_mode/pending_mig")),
        },
        "mig_device_count": _mig_device_count(gpu),
        "ecc_mode": {
            "current": to_bool(_text(gpu, "ecc_mode/current_ecc")),
            "pending": to_bool(_text(gpu, "ecc_mode/pending_ecc")),
        },
        "ecc_errors": _ecc_errors(gpu),
        "retired_pages": _retired_pages(gpu),
        "remapped_rows": _remapped_rows(gpu),
        "pcie": _pcie(gpu),
        "clocks_event_reasons": reasons,
        "clocks_event_reasons_active": active,
        "memory": {
            "total_mib": to_int(_text(gpu, "fb_memory_usage/total")),
            "used_mib": to_int(_text(gpu, "fb_memory_usage/used")),
        },
        "power": _power(gpu),
        "power_limits": _power_limits(gpu),
        "ecc_split": _ecc_split(gpu),
        "virtualization_mode": _text(gpu, "gpu_virtualization_mode/virtualization_mode"),
        "gpu_recovery_action": _text(gpu, "gpu_recovery_action"),
        "fabric": _fabric(gpu),
        "temperature_c": to_int(_text(gpu, "temperature/gpu_temp")),
        "memory_temperature_c": to_int(_text(gpu, "temperature/memory_temp")),
    }


def parse_nvidia_smi_xml(text):
    """Parse ``nvidia-smi -q -x`` output.

    Returns ``{"driver_version", "cuda_version", "attached_gpus", "gpu_count", "gpus"}``; ``gpus``
    is a list in nvidia-smi's index order (the order of the <gpu> elements). ``gpu_count`` counts
    the <gpu> elements, ``attached_gpus`` is what nvidia-smi claims (they differ only in edited
    reports). Raises ``NvidiaSmiParseError`` for output that is not an <nvidia_smi_log> document.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not text or not text.strip():
        raise NvidiaSmiParseError("nvidia-smi produced no XML output (empty input)")
    try:
        # The input is the local nvidia-smi's report; the stdlib expat (>= 2.4.1) refuses
        # entity-expansion attacks and ElementTree never fetches the external DTD it names.
        root = ET.fromstring(text.strip())  # noqa: S314
    except ET.ParseError as exc:
        raise NvidiaSmiParseError(f"nvidia-smi output is not well-formed XML: {exc}") from exc
    if root.tag != "nvidia_smi_log":
        raise NvidiaSmiParseError(
            f"nvidia-smi output has root element <{root.tag}>, expected <nvidia_smi_log>"
        )
    gpus = [parse_gpu(gpu, index) for index, gpu in enumerate(root.findall("gpu"))]
    return {
        "driver_version": _text(root, "driver_version"),
        "cuda_version": _text(root, "cuda_version"),
        "attached_gpus": to_int(_text(root, "attached_gpus")),
        "gpu_count": len(gpus),
        "gpus": gpus,
    }


# --- the plain-text report (nvidia-smi -q) -----------------------------------------------------

_GPU_HEADER = re.compile(r"^GPU\s+(?P<id>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s*$")
_FIELD = re.compile(r"^(?P<label>[^:]*?[^\s:])\s*:\s?(?P<value>.*)$")
_REASONS = "clocks_event_reasons"
_REASON = "clocks_event_reason_"

# (parent tag or None for any parent, label in lower case) -> XML tag or "tag/child" path.
_TAGS = {
    (None, "serial number"): "serial",
    (None, "gpu uuid"): "uuid",
    (None, "gpu current temp"): "gpu_temp",
    (None, "memory current temp"): "memory_temp",
    (None, "instantaneous power draw"): "instant_power_draw",
    (None, "clocks throttle reasons"): _REASONS,
    (None, "clocks event reasons"): _REASONS,
    ("pci", "bus id"): "pci_bus_id",
    ("pci", "device id"): "pci_device_id",
    ("pci", "gpu link info"): "pci_gpu_link_info",
    ("pci_gpu_link_info", "pcie generation"): "pcie_gen",
    ("pci_gpu_link_info", "link width"): "link_widths",
    ("pcie_gen", "max"): "max_link_gen",
    ("pcie_gen", "current"): "current_link_gen",
    ("link_widths", "max"): "max_link_width",
    ("link_widths", "current"): "current_link_width",
    ("ecc_mode", "current"): "current_ecc",
    ("ecc_mode", "pending"): "pending_ecc",
    ("mig_mode", "current"): "current_mig",
    ("mig_mode", "pending"): "pending_mig",
    (None, "sram uncorrectable sec-ded"): "sram_uncorrectable_secded",
    ("retired_pages", "single bit ecc"): "multiple_single_bit_retirement/retired_count",
    ("retired_pages", "double bit ecc"): "double_bit_retirement/retired_count",
    ("retired_pages", "pending page blacklist"): "pending_blacklist",
    ("retired_pages", "pending page retirement"): "pending_retirement",
    ("retired_pages", "pending"): "pending_retirement",
    ("remapped_rows", "correctable error"): "remapped_row_corr",
    ("remapped_rows", "uncorrectable error"): "remapped_row_unc",
    ("remapped_rows", "pending"): "remapped_row_pending",
    ("remapped_rows", "remapping failure occurred"): "remapped_row_failure",
    (_REASONS, "idle"): _REASON + "gpu_idle",
    (_REASONS, "display clock setting"): _REASON + "display_clocks_setting",
}


def _slug(label):
    return re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_") or "field"


def _tag(parent, label):
    lowered = " ".join(label.lower().split())
    tag = _TAGS.get((parent, lowered)) or _TAGS.get((None, lowered))
    if tag:
        return tag
    if parent == _REASONS:
        return _REASON + _slug(lowered)
    if parent == "mig_devices":
        return "mig_device"
    return _slug(lowered)


def _add(parent, path, value=None):
    """Add ``path`` ("a" or "a/b") under ``parent``; the last element gets ``value`` as text."""
    elem = parent
    for part in path.split("/"):
        elem = ET.SubElement(elem, part)
    if value is not None:
        elem.text = value
    return elem


def text_to_tree(text):
    """The ``<nvidia_smi_log>`` element an ``nvidia-smi -q`` text report stands for.

    Raises ``NvidiaSmiParseError`` when the text has neither a GPU section nor a driver version.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    root = ET.Element("nvidia_smi_log")
    stack = []  # (indent, element, holds a value)
    seen = False
    for raw in (text or "").expandtabs(4).splitlines():
        if not raw.strip() or raw.strip().startswith("="):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        header = _GPU_HEADER.match(line)
        if header:
            gpu = ET.SubElement(root, "gpu", id=header.group("id"))
            stack = [(indent, gpu, False)]
            seen = True
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        # Fields printed under a field are its siblings in the XML report.
        while stack and stack[-1][2]:
            stack.pop()
        parent = stack[-1][1] if stack else root
        field = _FIELD.match(line)
        label = field.group("label") if field else line
        tag = _tag(parent.tag if parent is not root else None, label)
        value = field.group("value").strip() if field else None
        if tag == "pci_device_id" and value and value.lower().startswith("0x"):
            value = value[2:]  # the text report prints 0x233010DE, the XML 233010DE
        elem = _add(parent, tag, value)
        stack.append((indent, elem, field is not None))
        if parent is root and tag in ("driver_version", "attached_gpus"):
            seen = True
    if not seen:
        raise NvidiaSmiParseError(
            "not an nvidia-smi -q text report: no 'GPU 0000:..' section and no 'Driver Version' line"
        )
    return root


def parse_nvidia_smi_text(text):
    """Parse ``nvidia-smi -q`` text output into what ``parse_nvidia_smi_xml`` returns.

    Support cases and bug reports carry the text report more often than the XML one
    (``nvidia-bug-report.sh`` and most pasted outputs have it). Rather than a second reading of
    every field, the text becomes the ``<nvidia_smi_log>`` element tree the XML report would have
    been (``text_to_tree``) and ``parse_gpu`` reads it: what a field means is written once.

    The text report is an indented tree: a section header is a line without ``:``, a field is
    ``Label<spaces>: value``, and each GPU starts with ``GPU 00000000:18:00.0`` at column 0. Labels
    become XML tags by ``_TAGS`` (where the two reports name a field differently) or by lower-casing
    and joining words with ``_`` (where they agree, as for most). Sub-fields printed under a field
    (``HW Thermal Slowdown`` under ``HW Slowdown``) are siblings in the XML and are flattened so.
    """
    return parse_nvidia_smi_xml(ET.tostring(text_to_tree(text), encoding="unicode"))
