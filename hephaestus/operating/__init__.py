"""What operators use to see and steer instances: the ``hephaestus instances`` commands.

``database`` opens a database named on the command line (a SQLite file or a
PostgreSQL DSN) for reading, and the runner that acts on it; ``views`` turns
instances, history records and graphs into the plain data of the JSON
output; ``text`` renders that data as terminal tables; ``commands`` is the
command line itself (``docs/cli.md``).
"""
