"""Job ids (opus.service.jobids): random, 16 hex digits, never the same twice, not shared with a
forked child."""

from __future__ import annotations

import os
import re
import threading

from opus.service import jobids


def test_ids_are_16_hex_digits_and_distinct_across_many_reads():
    ids = [jobids.new_job_id() for _ in range(5000)]  # ~10 reads of the OS's bytes
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_threads_never_get_the_same_id():
    got: list[list[str]] = [[] for _ in range(8)]

    def work(k: int) -> None:
        got[k] += [jobids.new_job_id() for _ in range(2000)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for ids in got for i in ids]
    assert len(set(flat)) == len(flat) == 16000


def test_a_forked_child_does_not_hand_out_its_parents_next_ids():
    jobids.new_job_id()  # the parent holds unread bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, ",".join(jobids.new_job_id() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = set(f.read().split(","))
    os.waitpid(pid, 0)
    parent = {jobids.new_job_id() for _ in range(50)}
    assert len(child) == 50 and not child & parent
