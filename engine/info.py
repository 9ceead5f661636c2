"""What this machine offers: the notebook's "Get the specs", for the Environment panel,
`python -m engine info` and bug reports.

Every fact is read at call time (nothing is hard-coded). Streamlit is never imported here:
package versions come from their installed metadata. TensorFlow is imported only when asked
for, because it costs seconds.
"""
import datetime
import importlib.metadata
import os
import platform
import sys

import numpy as np

# Distribution names of the packages shown in the panel (as pip knows them).
PACKAGES = ("streamlit", "plotly", "streamlit-drawable-canvas", "pillow", "threadpoolctl", "psutil")
NOT_INSTALLED = "not installed"

# Keys of environment_info(), documented for the UI and `info --json`.
KEYS = ("generated_at", "python", "python_implementation", "python_executable", "platform", "machine",
        "numpy", "blas", "cpu_count", "cpu_usable", "cpu_quota", "memory_total_bytes",
        "memory_available_bytes", "memory_limit_bytes", "memory_source", "packages", "dataset",
        "tensorflow", "keras", "gpus")


def package_version(name):
    """Installed version of a distribution, or 'not installed' (never imports it)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED


def blas_info():
    """The BLAS library NumPy uses and its thread count, via threadpoolctl (None if unknown)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return {"library": pool.get("internal_api"), "version": pool.get("version"),
                    "threads": pool.get("num_threads"), "threading_layer": pool.get("threading_layer"),
                    "architecture": pool.get("architecture"), "path": pool.get("filepath")}
    return None


def usable_cpus():
    """CPUs this process may run on (affinity), falling back to the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def cgroup_cpu_quota(path="/sys/fs/cgroup/cpu.max"):
    """CPU limit of this container in cores (cgroup v2 'quota period'), None when unlimited."""
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else round(int(quota) / int(period), 2)
    except (OSError, ValueError):
        return None


def cgroup_memory_limit(path="/sys/fs/cgroup/memory.max"):
    """Memory limit of this container in bytes, None when unlimited or unknown."""
    try:
        with open(path) as f:
            text = f.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def memory_info():
    """(total bytes, available bytes, source): psutil if installed, else /proc/meminfo."""
    try:
        import psutil
        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available), "psutil"
    except ImportError:
        pass
    try:
        fields = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                fields[key] = int(rest.split()[0]) * 1024  # values are in kB
        return fields.get("MemTotal"), fields.get("MemAvailable"), "/proc/meminfo"
    except (OSError, ValueError, IndexError):
        return None, None, "unknown"


def dataset_info():
    """Where datasets come from: environment variables, Keras's cache, the Debian package."""
    from .data import DEBIAN_FASHION_DIR, keras_cache_dir
    cache = keras_cache_dir()
    mnist_path = os.environ.get("MNIST_PATH") or None
    cached = (cache / "mnist.npz").is_file()
    if mnist_path:
        source = f"MNIST_PATH={mnist_path}"
    elif cached:
        source = f"Keras cache ({cache / 'mnist.npz'})"
    else:
        source = "downloaded by Keras on first use (no MNIST_PATH, nothing cached yet)"
    return {
        "mnist_source": source,
        "mnist_path": mnist_path,
        "keras_cache_dir": str(cache),
        "mnist_cached": cached,
        "fashion_mnist_path": os.environ.get("FASHION_MNIST_PATH") or None,
        "debian_fashion_mnist": str(DEBIAN_FASHION_DIR) if DEBIAN_FASHION_DIR.is_dir() else None,
    }


def tensorflow_info():
    """TensorFlow and Keras versions and the GPUs TensorFlow sees, or why it is unavailable."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except Exception as exc:  # ImportError, or a broken install raising anything
        reason = f"not available: {type(exc).__name__}: {exc}".strip()
        return {"tensorflow": reason, "keras": package_version("keras"), "gpus": None}
    try:
        import keras
        keras_version = keras.__version__
    except Exception as exc:
        keras_version = f"not available: {type(exc).__name__}: {exc}"
    try:
        gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    except Exception as exc:
        gpus = f"unknown: {exc}"
    return {"tensorflow": tf.__version__, "keras": keras_version, "gpus": gpus}


def environment_info(include_tensorflow=False):
    """All the facts as a JSON-ready dict (keys in KEYS). TensorFlow is imported only when
    include_tensorflow is True; otherwise its three fields are None ("not checked")."""
    total, available, memory_source = memory_info()
    info = {
        "generated_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "blas": blas_info(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable_cpus(),
        "cpu_quota": cgroup_cpu_quota(),
        "memory_total_bytes": total,
        "memory_available_bytes": available,
        "memory_limit_bytes": cgroup_memory_limit(),
        "memory_source": memory_source,
        "packages": {name: package_version(name) for name in PACKAGES},
        "dataset": dataset_info(),
        "tensorflow": None,
        "keras": None,
        "gpus": None,
    }
    if include_tensorflow:
        info.update(tensorflow_info())
    return info


def _gib(n):
    return "unknown" if n is None else f"{n / 2 ** 30:.1f} GiB"


def bug_report_text(info):
    """A plain-text block with every fact, to paste into a bug report."""
    blas = info.get("blas")
    blas_text = ("unknown (threadpoolctl not installed or no BLAS found)" if not blas else
                 f"{blas['library']} {blas['version']}, {blas['threads']} thread{'' if blas['threads'] == 1 else 's'}"
                 f" ({blas['threading_layer']}, {blas['architecture']})")
    quota = info.get("cpu_quota")
    limit = info.get("memory_limit_bytes")
    if info.get("tensorflow") is None:
        tf_lines = ["TensorFlow: not checked (slow to import; ask for it with --tensorflow)"]
    else:
        gpus = info.get("gpus")
        gpu_text = ", ".join(gpus) if isinstance(gpus, list) and gpus else (
            "none" if isinstance(gpus, list) else str(gpus or "unknown"))
        tf_lines = [f"TensorFlow: {info['tensorflow']}", f"Keras: {info.get('keras')}", f"GPUs: {gpu_text}"]
    data = info.get("dataset") or {}
    lines = [
        "Digit Lab environment",
        f"Generated: {info.get('generated_at')}",
        f"Python: {info.get('python')} ({info.get('python_implementation')}) at {info.get('python_executable')}",
        f"Platform: {info.get('platform')} ({info.get('machine')})",
        f"NumPy: {info.get('numpy')}",
        f"BLAS: {blas_text}",
        f"CPU cores: {info.get('cpu_count')} (usable by this process: {info.get('cpu_usable')}"
        + (f", container limit: {quota}" if quota else "") + ")",
        f"Memory: {_gib(info.get('memory_total_bytes'))} total, {_gib(info.get('memory_available_bytes'))} "
        f"available" + (f", container limit {_gib(limit)}" if limit else "") + f" (from {info.get('memory_source')})",
        *[f"{name}: {version}" for name, version in (info.get("packages") or {}).items()],
        f"MNIST source: {data.get('mnist_source')}",
        f"MNIST_PATH: {data.get('mnist_path') or 'not set'}",
        f"Keras cache: {data.get('keras_cache_dir')} (mnist.npz cached: {'yes' if data.get('mnist_cached') else 'no'})",
        f"FASHION_MNIST_PATH: {data.get('fashion_mnist_path') or 'not set'}",
        f"Debian dataset-fashion-mnist: {data.get('debian_fashion_mnist') or 'not installed'}",
        *tf_lines,
    ]
    return "\n".join(lines)
