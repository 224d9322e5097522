"""What every process shares: the bus envelope and endpoints, typed requests (the control
requests, the launch configuration), the actor loop, restart policy, logs, counters.
"""
