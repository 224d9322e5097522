"""Encryption, sans-IO: session keys, sealing, the replay window, the crypto actor's protocol and
key ring.
"""
