"""IVOA Provenance (ProvDM) for jobs and results.

Not built yet: the provenance issue ("Provenance and the result store") fills this package.  The
job store already records what it will need (parameters, results with SHA-256, job definition
version, start and end times).
"""
