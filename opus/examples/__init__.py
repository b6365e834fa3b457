"""Example programs that the shipped job definitions of ``jdl/`` run with ``"$OPUS_PYTHON" -m``.

They need the optional ``science`` extra (astropy, numpy, matplotlib): ``pip install -e '.[science]'``.
"""
