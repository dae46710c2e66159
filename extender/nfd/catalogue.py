"""What NFD reports: its feature names, their element kinds and names, and the formats of
their values.

Owns the declarative catalogue that :mod:`.lint` checks spec names against: the domains NFD
reports, each feature's kind (flags, attributes or instances) with the element names it
has where that set is closed, the hex widths of PCI and USB IDs, and the CPUID vendor
strings NFD renames. Written from NFD's feature sources; no logic beyond a lookup.
"""

from __future__ import annotations

import re
from typing import Literal

from extender.nfd.rules import BACKREF_FEATURE

__all__ = [
    "ALL_DOMAINS",
    "CPUID_VENDOR_STRINGS",
    "FEATURES",
    "HEX_IDS",
    "HUGEPAGES_ELEMENT",
    "KNOWN_DOMAINS",
    "Kind",
    "element_kind",
]


KNOWN_DOMAINS = ("cpu", "kernel", "memory", "network", "pci", "storage", "system", "usb", "local")
ALL_DOMAINS = (*KNOWN_DOMAINS, "rule")

Kind = Literal["flag", "attribute", "instance", "dynamic"]

# feature -> (kind, the element names NFD reports, or None where the set is open)
FEATURES: dict[str, tuple[Kind, frozenset[str] | None]] = {
    "cpu.cpuid": ("flag", None),  # plus the attribute AVX10_VERSION on AVX10 CPUs
    "cpu.model": ("attribute", frozenset({"vendor_id", "family", "id", "hypervisor"})),
    "cpu.cstate": ("attribute", frozenset({"enabled"})),
    "cpu.pstate": ("attribute", frozenset({"status", "turbo", "scaling_governor"})),
    "cpu.rdt": (
        "attribute",
        frozenset(
            {"RDTMON", "RDTCMT", "RDTMBM", "RDTL3CA", "RDTL3CA_NUM_CLOSID", "RDTL2CA", "RDTMBA"}
        ),
    ),
    "cpu.security": (
        "attribute",
        frozenset(
            {
                "sgx.enabled",
                "sgx.epc",
                "tdx.enabled",
                "tdx.total_keys",
                "tdx.protected",
                "sev.enabled",
                "sev.asids",
                "sev.es.enabled",
                "sev.encrypted_state_ids",
                "sev.snp.enabled",
                "se.enabled",
            }
        ),
    ),
    "cpu.sst": ("attribute", frozenset({"bf.enabled"})),
    "cpu.topology": ("attribute", frozenset({"hardware_multithreading", "socket_count"})),
    "cpu.coprocessor": ("attribute", frozenset({"nx_gzip"})),
    "kernel.config": ("attribute", None),
    "kernel.loadedmodule": ("flag", None),
    "kernel.enabledmodule": ("flag", None),
    "kernel.selinux": ("attribute", frozenset({"enabled"})),
    "kernel.kvm": ("attribute", frozenset({"enabled"})),
    "kernel.version": ("attribute", frozenset({"full", "major", "minor", "revision"})),
    "memory.numa": ("attribute", frozenset({"is_numa", "node_count"})),
    "memory.swap": ("attribute", frozenset({"enabled"})),
    "memory.hugepages": ("attribute", None),  # enabled, hugepages-<size>: checked by pattern
    "memory.nv": ("instance", frozenset({"name", "devtype", "mode"})),
    "network.device": (
        "instance",
        frozenset({"name", "operstate", "speed", "sriov_numvfs", "sriov_totalvfs", "mtu"}),
    ),
    "network.virtual": ("instance", frozenset({"name", "operstate", "speed", "mtu"})),
    "pci.device": (
        "instance",
        frozenset(
            {
                "class",
                "vendor",
                "device",
                "subsystem_vendor",
                "subsystem_device",
                "sriov_totalvfs",
                "iommu_group/type",
                "iommu/intel-iommu/version",
            }
        ),
    ),
    "storage.block": ("instance", frozenset({"name", "dax", "rotational", "nr_zones", "zoned"})),
    "system.osrelease": ("attribute", None),
    "system.name": ("attribute", frozenset({"nodename"})),
    "system.dmiid": (
        "attribute",
        frozenset(
            {
                "bios_date",
                "bios_vendor",
                "bios_version",
                "board_asset_tag",
                "board_name",
                "board_vendor",
                "board_version",
                "chassis_asset_tag",
                "chassis_type",
                "chassis_vendor",
                "chassis_version",
                "product_family",
                "product_name",
                "product_sku",
                "product_version",
                "sys_vendor",
            }
        ),
    ),
    "usb.device": ("instance", frozenset({"class", "vendor", "device", "serial"})),
    "local.label": ("attribute", None),
    "local.feature": ("attribute", None),
    BACKREF_FEATURE: ("dynamic", None),
}
CPUID_ATTRIBUTE = "AVX10_VERSION"
HUGEPAGES_ELEMENT = re.compile(r"enabled|hugepages-[0-9]+(Ki|Mi|Gi|Ti|Pi)")
# Lower-case hex as sysfs prints it, without 0x (NFD strips it; PCI class is cut to 4 digits).
HEX_IDS: dict[str, dict[str, int]] = {
    "pci.device": {
        "class": 4,
        "vendor": 4,
        "device": 4,
        "subsystem_vendor": 4,
        "subsystem_device": 4,
    },
    "usb.device": {"class": 2, "vendor": 4, "device": 4},
}
CPUID_VENDOR_STRINGS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}


def element_kind(feature: str, name: str) -> Kind | None:
    """The element kind NFD gives ``feature``'s element ``name``; None for unknown features."""
    known = FEATURES.get(feature)
    if known is None:
        return None
    if feature == "cpu.cpuid" and name == CPUID_ATTRIBUTE:
        return "attribute"
    return known[0]
