"""The wristband side of emgstream.

- ``PROTOCOL.md``: the serial wire format (v1), byte offsets and receiver rules.
- :mod:`firmware_bridge.codec`: Python encoder and resynchronising streaming decoder.
- ``firmware/``: reference C firmware (two ADS1299 on SPI, 16 channels); ``frame.c`` builds on
  the host and is checked byte for byte against the codec.
- :mod:`firmware_bridge.virtual_device`: a virtual wristband on a pseudo-terminal, with faults.
- :mod:`firmware_bridge.lsl_outlet`: LSL outlets with EMG stream metadata (``emgstream bridge``).

The host side of the link is ``emgstream.sources.serial`` (``serial:///dev/ttyUSB0``).
Nothing here imports torch or Qt.
"""
