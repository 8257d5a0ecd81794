"""One module per process kind (services, loops, mutators).

Each service module exposes `main(argv: list[str]) -> int`, started by factoryd as a
supervised child (`target = "procs.<module>:main"`). `procs` imports only `ipc`.
"""
