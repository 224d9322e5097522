"""The sizes of the sealed formats (:mod:`weavenet.crypto.seal`), without libsodium.

Apart from ``seal`` so that what only needs the numbers (the crypto actor's protocol, the
forwarder's room for a MAC) does not load libsodium into processes that never seal.
"""

KEY_SIZE = 32
MAC_SIZE = 16
SEQ_SIZE = 8
LENGTH_SIZE = 4
DATAGRAM_OVERHEAD = SEQ_SIZE + MAC_SIZE
STREAM_OVERHEAD = LENGTH_SIZE + MAC_SIZE
