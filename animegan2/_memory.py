"""This process's memory as the operating system reports it, on Linux, macOS and Windows.

One home for the platform rules: ``/proc`` on Linux; ``getrusage``'s ``ru_maxrss`` in bytes on
macOS (kilobytes on Linux and the BSDs) and the Mach task info for the current size; the
process memory counters on Windows. POSIX-only modules are imported inside the functions
that use them, so importing this module works everywhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

__all__ = ["current_rss", "peak_rss", "trim_heap"]


def current_rss() -> int | None:
    """Resident set size now, in bytes; ``None`` where the OS offers no reading."""
    try:
        if sys.platform.startswith("linux"):
            return _linux_status_kib("VmRSS") * 1024
        if sys.platform == "darwin":
            return _mach_basic_info().resident_size
        if sys.platform == "win32":
            return _windows_counters().WorkingSetSize
    except (OSError, ValueError, AttributeError):
        pass
    return None


def peak_rss() -> int | None:
    """The largest resident set size this process has had, in bytes; ``None`` where the OS
    offers no reading. On Linux this is the process's own ``VmHWM``, which, unlike
    ``ru_maxrss``, does not start from the parent's size in a forked child."""
    try:
        if sys.platform.startswith("linux"):
            return _linux_status_kib("VmHWM") * 1024
        if sys.platform == "win32":
            return _windows_counters().PeakWorkingSetSize
        import resource  # POSIX only

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, KiB elsewhere
    except (OSError, ValueError, AttributeError, ImportError):
        return None


def trim_heap() -> None:
    """Give freed heap memory back to the OS where the C library can (glibc's ``malloc_trim``;
    glibc otherwise keeps it and the resident size creeps up). Elsewhere nothing to do."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def _linux_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise ValueError(f"{field} not in /proc/self/status")


class _MachTaskBasicInfo(ctypes.Structure):
    _fields_ = [
        ("virtual_size", ctypes.c_uint64),
        ("resident_size", ctypes.c_uint64),
        ("resident_size_max", ctypes.c_uint64),
        ("user_time", ctypes.c_int32 * 2),
        ("system_time", ctypes.c_int32 * 2),
        ("policy", ctypes.c_int32),
        ("suspend_count", ctypes.c_int32),
    ]


def _mach_basic_info() -> _MachTaskBasicInfo:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    info = _MachTaskBasicInfo()
    count = ctypes.c_uint32(ctypes.sizeof(info) // 4)  # in natural_t (32-bit) units
    task = ctypes.c_uint32.in_dll(libc, "mach_task_self_")
    mach_task_basic_info = 20
    if libc.task_info(task, mach_task_basic_info, ctypes.byref(info), ctypes.byref(count)) != 0:
        raise OSError("task_info failed")
    return info


class _ProcessMemoryCounters(ctypes.Structure):
    _fields_ = [
        ("cb", ctypes.c_uint32),
        ("PageFaultCount", ctypes.c_uint32),
        ("PeakWorkingSetSize", ctypes.c_size_t),
        ("WorkingSetSize", ctypes.c_size_t),
        ("QuotaPeakPagedPoolUsage", ctypes.c_size_t),
        ("QuotaPagedPoolUsage", ctypes.c_size_t),
        ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t),
        ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
        ("PagefileUsage", ctypes.c_size_t),
        ("PeakPagefileUsage", ctypes.c_size_t),
    ]


def _windows_counters() -> _ProcessMemoryCounters:
    kernel32, psapi = ctypes.WinDLL("kernel32"), ctypes.WinDLL("psapi")
    kernel32.GetCurrentProcess.restype = ctypes.c_void_p  # a HANDLE, pointer-sized
    psapi.GetProcessMemoryInfo.argtypes = [ctypes.c_void_p, ctypes.POINTER(_ProcessMemoryCounters), ctypes.c_uint32]
    counters = _ProcessMemoryCounters()
    counters.cb = ctypes.sizeof(counters)
    if not psapi.GetProcessMemoryInfo(kernel32.GetCurrentProcess(), ctypes.byref(counters), counters.cb):
        raise OSError("GetProcessMemoryInfo failed")
    return counters
