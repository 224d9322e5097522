"""What every process shares: the bus envelope and endpoints, typed requests (the control
requests, the launch configuration), the actor loop, restart policy, logs, counters, defaults,
the address parser, and the I/O plumbing actors build on: non-blocking TCP (``tcp``), replies
awaited at startup (``startup``), requests relayed to another actor (``relay``) and
``actor.ready`` callbacks (``ready``).
"""
