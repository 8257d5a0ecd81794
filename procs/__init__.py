"""One package per process kind (services, loops, mutators).

Each kind's supervisor target is `procs/<kind>/service.py:main(argv) -> int`, started
by factoryd as a supervised child; its library sits beside it in the same folder. A
kind imports only `ipc` (and shared libraries such as `procs.sandbox`), never another
kind: they talk over their control sockets and the bus.
"""
