"""The sleeve data plane: frames, batches, the MAC cache, forwarding (the route table), sleeve
datagrams and their sealed layout, path MTU, per-neighbour paths, the routes event decoded,
inbound dispatch and outbound packing (all sans-IO), and the two I/O pieces the forwarder wires
together: the sleeve's UDP socket and its sends (``udp_socket``, ``udp``) and the never-blocking
batch queues between actors (``queues``).
"""
