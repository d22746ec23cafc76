"""The inventory: which hosts to diagnose and how to reach them, from an Ansible inventory.

``read_inventory("hosts.yaml")`` reads it through ansible-core when installed, else with the
built-in reader (``load_inventory``, YAML or INI, unchanged); ``select_hosts(inventory,
"web:!web03")`` applies an Ansible --limit (``select_with_warnings`` also returns Ansible's warnings).
"""

from fleetdiag.inventory.limit import Selection, select_hosts, select_with_warnings
from fleetdiag.inventory.loader import Inventory, load_inventory, local_inventory
from fleetdiag.inventory.readers import read_inventory

__all__ = [
    "Inventory", "Selection", "load_inventory", "local_inventory", "read_inventory", "select_hosts",
    "select_with_warnings",
]  # fmt: skip
