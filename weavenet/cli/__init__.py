"""The `weave` command line: commands, the control-socket client, Docker lookups, status rendering.

"""
