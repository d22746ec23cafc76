"""The inventory: which hosts to diagnose and how to reach them, from an Ansible YAML file.

``load_inventory("hosts.yaml")`` reads an existing Ansible YAML inventory unchanged;
``select_hosts(inventory, "web:!web03")`` applies an Ansible-style --limit.
"""

from fleetdiag.inventory.limit import select_hosts
from fleetdiag.inventory.loader import Inventory, load_inventory, local_inventory

__all__ = ["Inventory", "load_inventory", "local_inventory", "select_hosts"]
