"""qubes: the Qubes OS domain model over Xen, KVM and LXC.

The store and its domains are in :mod:`qubes.app` and :mod:`qubes.vm`;
the hypervisor drivers in :mod:`qubes.backends`.
"""

from qubes.app import Qubes
from qubes.properties import DEFAULT, Property, VMProperty

__all__ = ["Qubes", "Property", "VMProperty", "DEFAULT"]

__version__ = "0.1.0"
