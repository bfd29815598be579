"""One process cutting and running a pipeline's batches (or a partition group's) on a lake.

flock locks belong to an open file, so two locks taken in this process conflict as two
processes' would; the last test uses a real second process, killed, to show no stale lock.
"""

import os
import signal
import subprocess
import sys

import pytest

from headwater.errors import HeadwaterError
from headwater.worker_lock import WorkerLock


def lock(folder, group=None, command="headwater stream") -> WorkerLock:
    return WorkerLock(folder, "placement", group, command)


def test_a_second_process_on_a_pipeline_is_refused_naming_the_first(tmp_path):
    with lock(tmp_path), pytest.raises(HeadwaterError) as caught:
        lock(tmp_path, command="headwater run").acquire()
    text = str(caught.value)
    assert text.startswith(
        f"headwater run: another process (headwater stream, PID {os.getpid()}) is cutting and "
        "running the batches of pipeline placement on this lake"
    )
    assert str(tmp_path) in text and "--partition-group" in text
    lock(tmp_path).acquire().release()  # free once the first ends


def test_partition_groups_run_side_by_side_but_not_beside_a_process_of_every_group(tmp_path):
    one, two = lock(tmp_path, 1).acquire(), lock(tmp_path, 2).acquire()
    with pytest.raises(HeadwaterError, match=r"PID \d+\) is cutting .* \(partition group 1\)"):
        lock(tmp_path, 1).acquire()
    with pytest.raises(HeadwaterError, match="processes of single partition groups are cutting"):
        lock(tmp_path).acquire()
    one.release(), two.release()
    every = lock(tmp_path).acquire()
    with pytest.raises(HeadwaterError, match=r"another process \(headwater stream, PID \d+\)"):
        lock(tmp_path, 3).acquire()
    every.release()


def test_a_killed_worker_leaves_no_stale_lock(tmp_path):
    holder = (
        "import pathlib, time\n"
        "from headwater.worker_lock import WorkerLock\n"
        f"lock = WorkerLock(pathlib.Path({str(tmp_path)!r}), 'p', None, 'w').acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(HeadwaterError, match=f"PID {proc.pid}"):
            lock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    lock(tmp_path).acquire().release()
