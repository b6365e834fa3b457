"""Phase-change notifications between processes and hosts."""
