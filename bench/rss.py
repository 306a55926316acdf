"""Peak memory of a process and its children, sampled from ``/proc``.

:class:`TreeSampler` is a thread that reads ``/proc/<pid>/stat`` of every process every
``interval`` seconds (20 ms by default): the parent pid links a process to the tree of the
watched root (``/proc/<pid>/task/*/children`` is not available on every kernel), the ``rss``
field gives its resident set. Each sample keeps the root's RSS and the tree's total; per
process (pid and command name) the highest RSS seen is kept as well.

``window(t0, t1)`` gives the peaks between two ``time.monotonic()`` instants, e.g. while one
request runs. VmRSS goes up and down, so peaks of a window come from samples; ``VmHWM`` (the
kernel's own high-water mark of the root, read by :meth:`TreeSampler.stop`) is the ground
truth for the whole run. A child that lives shorter than the interval can be missed, and a
spike between two samples is not seen: the sampled peaks are lower bounds. A child that was
forked but has not yet exec'd its tool (same command name as the root) is left out: its RSS is
the parent's shared pages, not memory of its own.

:func:`tree_cpu` sums the CPU time of a process and its descendants, to show whether a server
was busy (one core = 100 %) while it was measured.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

__all__ = ["ProcessPeak", "TreeSampler", "WindowPeak", "read_hwm", "tree_cpu"]

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its living descendants."""
    procs = _scan()
    return sum(procs[p].cpu for p in _tree(procs, pid))


def read_hwm(pid: int) -> int | None:
    """``VmHWM`` of ``pid`` in bytes (its peak resident set so far), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class _Stat:
    ppid: int
    comm: str
    rss: int  # bytes
    cpu: float  # user + system seconds


def _scan() -> dict[int, _Stat]:
    """Every process now, from ``/proc/<pid>/stat``."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        comm = text[text.find("(") + 1 : text.rfind(")")]
        fields = text[text.rfind(")") + 2 :].split()
        # fields[0] is stat field 3 (state): ppid is field 4, utime/stime 14/15, rss 24
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
        out[int(name)] = _Stat(int(fields[1]), comm, int(fields[21]) * _PAGE, cpu)
    return out


def _tree(procs: dict[int, _Stat], root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, stat in procs.items():
        children.setdefault(stat.ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            out.append(pid)
            todo.extend(children.get(pid, ()))
    return out


@dataclass
class ProcessPeak:
    pid: int
    comm: str
    peak_rss: int
    root: bool


@dataclass(frozen=True)
class WindowPeak:
    root_rss: int  # highest RSS of the watched process in the window
    tree_rss: int  # highest sum over the process and its children in the window
    samples: int

    def to_json(self) -> dict[str, float]:
        return {
            "root_peak_mib": round(self.root_rss / MiB, 1),
            "tree_peak_mib": round(self.tree_rss / MiB, 1),
            "samples": self.samples,
        }


@dataclass
class TreeSampler:
    """Sample the RSS of ``pid`` and its descendants every ``interval`` seconds."""

    pid: int
    label: str
    interval: float = 0.02
    times: list[float] = field(default_factory=list)
    root_rss: list[int] = field(default_factory=list)
    tree_rss: list[int] = field(default_factory=list)
    processes: dict[int, ProcessPeak] = field(default_factory=dict)
    hwm: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, name=f"rss {self.label}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        procs = _scan()
        root = procs.get(self.pid)
        if root is None:
            return
        total = 0
        for pid in _tree(procs, self.pid):
            comm, rss = procs[pid].comm, procs[pid].rss
            if pid != self.pid and comm == root.comm:
                continue  # forked, not yet exec'd: its RSS is the parent's shared pages
            total += rss
            peak = self.processes.get(pid)
            if peak is None:
                self.processes[pid] = ProcessPeak(pid, comm, rss, pid == self.pid)
            elif rss > peak.peak_rss:
                peak.peak_rss = rss
        self.root_rss.append(root.rss)
        self.tree_rss.append(total)
        self.times.append(time.monotonic())  # last: window() indexes by times
        hwm = read_hwm(self.pid)
        if hwm is not None:
            self.hwm = hwm

    def stop(self) -> None:
        """Stop sampling (call before the process exits to keep its ``VmHWM``)."""
        self.sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def window(self, t0: float, t1: float) -> WindowPeak:
        lo, hi = bisect_left(self.times, t0), bisect_right(self.times, t1)
        if lo >= hi:  # nothing sampled inside: the nearest sample before is the best we know
            lo, hi = max(lo - 1, 0), max(lo, 1)
        roots, trees = self.root_rss[lo:hi], self.tree_rss[lo:hi]
        return WindowPeak(max(roots, default=0), max(trees, default=0), hi - lo)

    def peaks_by_command(self) -> dict[str, int]:
        """Highest RSS of any one process per command name (the root under its label)."""
        out: dict[str, int] = {}
        for peak in self.processes.values():
            name = self.label if peak.root else peak.comm
            out[name] = max(out.get(name, 0), peak.peak_rss)
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "pid": self.pid,
            "samples": len(self.times),
            "interval_ms": self.interval * 1000,
            "vm_hwm_mib": None if self.hwm is None else round(self.hwm / MiB, 1),
            "sampled_peak_mib": round(max(self.root_rss, default=0) / MiB, 1),
            "tree_peak_mib": round(max(self.tree_rss, default=0) / MiB, 1),
            "by_command_mib": {
                k: round(v / MiB, 1) for k, v in sorted(self.peaks_by_command().items())
            },
        }
