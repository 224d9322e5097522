"""The sleeve data plane, sans-IO: frames, batches, the MAC cache, forwarding, sleeve datagrams,
path MTU.
"""
