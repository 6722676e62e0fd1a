"""The wheel installs fastmlp and fastmlp.kernels only — never a top-level ``kernels`` module —
and every module of the checkout's fastmlp/ and kernels/ folders."""

import subprocess
import sys
import zipfile
from pathlib import Path

import fastmlp

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contents(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path)], check=True)
    wheel = next(tmp_path.glob("fastmlp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"fastmlp", f"fastmlp-{fastmlp.__version__}.dist-info"}, tops
    sources = [path.relative_to(ROOT / "fastmlp") for path in (ROOT / "fastmlp").rglob("*.py")]
    sources += [Path("kernels") / path.relative_to(ROOT / "kernels")
                for path in (ROOT / "kernels").rglob("*.py")]
    missing = sorted(str(path) for path in sources
                     if f"fastmlp/{path.as_posix()}" not in names)
    assert missing == [], f"modules left out of the wheel: {missing}"
    entry_points = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points[0]).decode()
    assert "fastmlp = fastmlp.cli:main" in text


def test_kernels_resolve_inside_the_package():
    import fastmlp.kernels.cpu.network as network
    assert Path(network.__file__).resolve().parent == ROOT / "kernels" / "cpu"
