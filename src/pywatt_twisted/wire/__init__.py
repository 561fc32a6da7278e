"""
pywatt_twisted.wire: the PyWatt protocol as plain values, no I/O.

  - L{init<pywatt_twisted.wire.init>}: the init blob (first stdin line) and its parts;
  - L{messages<pywatt_twisted.wire.messages>}: attrs classes for every op, both
    directions, and the envelope;
  - L{codec<pywatt_twisted.wire.codec>}: JSON encode/decode (accept the Rust and Python
    shapes, emit the Rust one);
  - L{framing<pywatt_twisted.wire.framing>}: channel frames (length + format byte);
  - L{envelope<pywatt_twisted.wire.envelope>}: the envelopes a module sends on a
    channel, and the routed envelope of module-to-module payloads;
  - L{lines<pywatt_twisted.wire.lines>}: stdio line splitting;
  - L{registration<pywatt_twisted.wire._registration>}: the optional registration and
    HTTP-over-TCP protocols.

Nothing in this package imports a reactor; C{docs/protocol.md} describes the protocol
as implemented here.
"""
