"""OTP core: child specs, restart policy, the supervision tree, factoryd and factoryctl.

Knows nothing of agents: services are named in config by target string and imported
only inside the child process. `supervisor` imports only `ipc`.
"""
