"""Sans-IO protocol machines above the socket layer (DNS, NTP; DHCP and HTTP beside them): bytes and
``now`` in, actions and results out. No sockets, no clock, no threads: the drivers in ``api`` and
``apps`` do the I/O."""
