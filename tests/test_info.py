"""The environment facts are read from the machine, never hard-coded."""
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import info

ROOT = Path(__file__).resolve().parents[1]


def test_facts_are_read_from_the_machine():
    facts = info.environment_info()
    assert set(facts) == set(info.KEYS)
    assert facts["numpy"] == np.__version__
    assert facts["python"] == platform.python_version()
    assert facts["cpu_count"] == os.cpu_count()
    assert 1 <= facts["cpu_usable"] <= os.cpu_count()
    assert facts["memory_total_bytes"] > facts["memory_available_bytes"] > 0
    assert facts["packages"]["pillow"] == importlib.metadata.version("pillow")
    assert facts["tensorflow"] is None and facts["gpus"] is None  # not asked for
    json.dumps(facts)  # JSON-ready


def test_the_blas_facts_are_what_threadpoolctl_sees_numpy_use():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    facts = info.environment_info()
    if not blas:
        assert facts["blas"] is None
    else:
        assert facts["blas"]["library"] == blas[0]["internal_api"]
        assert facts["blas"]["threads"] == blas[0]["num_threads"]


def test_missing_package_says_not_installed(monkeypatch):
    assert info.package_version("no-such-package-digitlab") == info.NOT_INSTALLED
    monkeypatch.setattr(info, "PACKAGES", ("pillow", "no-such-package-digitlab"))
    assert info.environment_info()["packages"]["no-such-package-digitlab"] == "not installed"


def test_memory_without_psutil_reads_proc_meminfo(monkeypatch):
    if not Path("/proc/meminfo").exists():
        pytest.skip("no /proc/meminfo on this system")
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil now raises ImportError
    total, available, source = info.memory_info()
    assert source == "/proc/meminfo" and total > available > 0
    # read independently: MemTotal does not change while the test runs (MemAvailable does)
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
    assert fields["MemTotal"].split() == [str(total // 1024), "kB"]


def test_cgroup_limits_are_read_as_cores_and_bytes_and_none_when_unlimited(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "memory.max").write_text("1073741824\n")
    assert info.cgroup_cpu_quota(tmp_path / "cpu.max") == 1.5
    assert info.cgroup_memory_limit(tmp_path / "memory.max") == 2 ** 30
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert info.cgroup_cpu_quota(tmp_path / "cpu.max") is None
    assert info.cgroup_memory_limit(tmp_path / "memory.max") is None
    assert info.cgroup_cpu_quota(tmp_path / "absent") is None
    assert info.cgroup_memory_limit(tmp_path / "absent") is None
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    (tmp_path / "memory.max").write_text("536870912\n")
    assert info.cgroup_cpu_quota(tmp_path / "cpu.max") == 0.5
    assert info.cgroup_memory_limit(tmp_path / "memory.max") == 2 ** 29
    (tmp_path / "cpu.max").write_text("garbled\n")
    (tmp_path / "memory.max").write_text("lots\n")
    assert info.cgroup_cpu_quota(tmp_path / "cpu.max") is None
    assert info.cgroup_memory_limit(tmp_path / "memory.max") is None


def test_dataset_locations_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    monkeypatch.setenv("MNIST_PATH", str(tmp_path / "digits.npz"))
    data = info.environment_info()["dataset"]
    assert data["keras_cache_dir"] == str(tmp_path / "kh" / "datasets")
    assert data["mnist_path"] == str(tmp_path / "digits.npz")
    assert "MNIST_PATH" in data["mnist_source"] and data["mnist_cached"] is False
    monkeypatch.delenv("MNIST_PATH")
    (tmp_path / "kh" / "datasets").mkdir(parents=True)
    (tmp_path / "kh" / "datasets" / "mnist.npz").write_bytes(b"PK")
    data = info.environment_info()["dataset"]
    assert data["mnist_cached"] is True and "Keras cache" in data["mnist_source"]


def test_tensorflow_unavailable_is_reported_not_raised(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # simulates a missing TensorFlow
    facts = info.environment_info(include_tensorflow=True)
    assert facts["tensorflow"].startswith("not available:")
    assert facts["gpus"] is None
    text = info.bug_report_text(facts)
    assert "TensorFlow: not available" in text


def test_tensorflow_version_and_gpus_are_reported_when_installed():
    tf = pytest.importorskip("tensorflow")
    facts = info.environment_info(include_tensorflow=True)
    assert facts["tensorflow"] == tf.__version__
    assert isinstance(facts["gpus"], list)
    assert facts["gpus"] == [d.name for d in tf.config.list_physical_devices("GPU")]
    assert "GPUs:" in info.bug_report_text(facts)


def test_bug_report_text_has_every_fact():
    facts = info.environment_info()
    text = info.bug_report_text(facts)
    for needle in (facts["numpy"], facts["python"], facts["platform"], facts["dataset"]["keras_cache_dir"],
                   "streamlit-drawable-canvas", "TensorFlow: not checked"):
        assert needle in text
    if facts["blas"]:
        assert f"{facts['blas']['threads']} thread" in text  # 'thread' or 'threads'
    assert "\t" not in text and text.count("\n") >= 15


def test_info_imports_neither_streamlit_nor_tensorflow():
    code = ("import sys, engine.info as i; i.bug_report_text(i.environment_info()); "
            "print('streamlit' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
