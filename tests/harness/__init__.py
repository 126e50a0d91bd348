"""The one test harness: real redis-server processes on loopback, for the tests, the bench and the chaos run.

- ``process``: one server child process (free ports, start, pause, kill, logs) — the base of everything below;
- ``server``: ``RedisServer``, a single server, plain, TLS-only or with the least-privilege ACL user;
- ``cluster``: ``LocalCluster``, six cluster nodes; ``sentinel``: ``LocalSentinel``, two data nodes, three sentinels;
- ``tls``: throwaway certificates; ``proxy``: ``SlowProxy``, a slow (or held) network in front of a server.

Import it as ``tests.harness`` from the repository root (``tests`` is a package; pytest, ``python -m chaos.run``
and ``bench/run.py`` all have the root on ``sys.path``). Importing it starts nothing.
"""
