"""One stream worker per pipeline (or partition group) on a lake: the lock and its message.

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


def test_a_second_worker_of_a_pipeline_is_refused_naming_the_first(tmp_path):
    with WorkerLock(tmp_path, "placement", None), pytest.raises(HeadwaterError) as caught:
        WorkerLock(tmp_path, "placement", None).acquire()
    text = str(caught.value)
    assert f"another headwater stream (PID {os.getpid()}) is running pipeline placement" in text
    assert str(tmp_path) in text and "--partition-group" in text
    WorkerLock(tmp_path, "placement", None).acquire().release()  # free once the first ends


def test_partition_groups_run_side_by_side_but_not_beside_a_worker_of_every_group(tmp_path):
    one, two = WorkerLock(tmp_path, "p", 1).acquire(), WorkerLock(tmp_path, "p", 2).acquire()
    with pytest.raises(
        HeadwaterError, match=r"PID \d+\) is running pipeline p \(partition group 1"
    ):
        WorkerLock(tmp_path, "p", 1).acquire()
    with pytest.raises(HeadwaterError, match="workers of partition groups are running pipeline p"):
        WorkerLock(tmp_path, "p", None).acquire()
    one.release(), two.release()
    every = WorkerLock(tmp_path, "p", None).acquire()
    with pytest.raises(HeadwaterError, match=r"another headwater stream \(PID \d+\) is running"):
        WorkerLock(tmp_path, "p", 3).acquire()
    every.release()


def test_a_killed_worker_leaves_no_stale_lock(tmp_path):
    holder = (
        "import pathlib, time\n"
        "from headwater.worker_lock import WorkerLock\n"
        f"lock = WorkerLock(pathlib.Path({str(tmp_path)!r}), 'p', None).acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(HeadwaterError, match=f"PID {proc.pid}"):
            WorkerLock(tmp_path, "p", None).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    WorkerLock(tmp_path, "p", None).acquire().release()
