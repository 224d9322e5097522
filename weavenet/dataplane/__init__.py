"""The sleeve data plane, sans-IO: frames, batches, the MAC cache, forwarding (the route table),
sleeve datagrams and their sealed layout, path MTU, per-neighbour paths, the routes event
decoded, inbound dispatch and outbound packing, and the UDP socket vocabulary.
"""
