"""What every process shares: the bus envelope and endpoints, the actor loop, restart policy, logs,
counters.
"""
