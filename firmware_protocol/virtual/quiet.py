"""Bumble's host and device without formatting the data path for a debug log that is off.

Bumble writes every HCI packet and every ATT PDU it receives into a string for its debug
log, whether that log is on or not (an f-string is built before ``logger.debug`` looks at
the level). On a link streaming notifications that is every packet: a visible slice of
a hub's profile at 40 sensors, and more of a virtual sensor's. These classes take the data
packets and notifications straight to Bumble's own handlers unless the log that would
show them is on (or a snooper records the HCI traffic); everything else goes through
Bumble unchanged. Shared by the virtual sensors and the hub's Bumble backend.
"""

from __future__ import annotations

import logging
from typing import Final

from bumble import att, hci
from bumble.device import Device
from bumble.host import Host

__all__ = ["QuietDevice", "QuietHost"]

_HOST_LOG: Final = logging.getLogger("bumble.host")
_GATT_CLIENT_LOG: Final = logging.getLogger("bumble.gatt_client")
_NOTIFICATION: Final = int(att.Opcode.ATT_HANDLE_VALUE_NOTIFICATION)


class QuietHost(Host):
    """Bumble's host; ACL data and completed-packet events skip the debug formatting."""

    def _quiet(self) -> bool:
        return not (self.snooper or _HOST_LOG.isEnabledFor(logging.DEBUG))

    def on_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if not self._quiet():
            super().on_hci_packet(packet)
        elif isinstance(packet, hci.HCI_AclDataPacket):
            self.on_hci_acl_data_packet(packet)
        elif isinstance(packet, hci.HCI_Number_Of_Completed_Packets_Event):
            self.on_hci_event_packet(packet)
        else:
            super().on_hci_packet(packet)

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if isinstance(packet, hci.HCI_AclDataPacket) and self._quiet():
            if self.hci_sink:
                self.hci_sink.on_packet(bytes(packet))
        else:
            super().send_hci_packet(packet)


class QuietDevice(Device):
    """Bumble's device; a notification goes to its subscribers without the debug formatting.

    Give it a :class:`QuietHost` (``host=``) to quiet the HCI layer under it as well.
    """

    def on_gatt_pdu(self, connection_handle: int, pdu: bytes) -> None:
        if pdu and pdu[0] == _NOTIFICATION and not _GATT_CLIENT_LOG.isEnabledFor(logging.DEBUG):
            connection = self.lookup_connection(connection_handle)
            notification = att.ATT_PDU.from_bytes(pdu)
            if connection is not None and isinstance(
                notification, att.ATT_Handle_Value_Notification
            ):
                connection.gatt_client.on_att_handle_value_notification(notification)
                return
        super().on_gatt_pdu(connection_handle, pdu)
