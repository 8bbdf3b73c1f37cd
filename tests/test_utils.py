"""utils.py: the persistent compilation cache folder and switch."""
import os
import subprocess
import sys

from vsreid_jax import utils


def test_compile_cache_folder_follows_xdg_and_can_be_turned_off(monkeypatch, tmp_path):
  monkeypatch.delenv(utils.COMPILE_CACHE_ENV, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert utils.compile_cache_dir() == os.path.join(str(tmp_path), "vsreid_jax", "xla")
  monkeypatch.setenv(utils.COMPILE_CACHE_ENV, "off")
  assert utils.compile_cache_dir() is None and utils.enable_compile_cache() is None
  monkeypatch.setenv(utils.COMPILE_CACHE_ENV, str(tmp_path / "elsewhere"))
  assert utils.compile_cache_dir() == str(tmp_path / "elsewhere")


SCRIPT = """
import sys, time, jax, jax.numpy as jnp
from vsreid_jax import utils
print(utils.enable_compile_cache(sys.argv[1]))
def f(x):
  for i in range(60):
    x = jnp.tanh(x @ x.T + i) * jnp.cos(x)
  return x
t = time.perf_counter(); jax.jit(f)(jnp.ones((32, 32))).block_until_ready(); print(time.perf_counter() - t)
"""


def test_a_second_process_loads_compiled_functions_from_the_cache(tmp_path):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
  folder = tmp_path / "xla"
  first = subprocess.run([sys.executable, "-c", SCRIPT, str(folder)], env=env, capture_output=True, text=True,
                         check=True)
  entries = {p.name: p.stat().st_mtime_ns for p in folder.glob("jit_f-*")}
  assert first.stdout.split()[0] == str(folder) and len(entries) == 1  # the compiled function was written
  subprocess.run([sys.executable, "-c", SCRIPT, str(folder)], env=env, capture_output=True, text=True, check=True)
  # The second process found it: the entry is neither added again nor rewritten.
  assert {p.name: p.stat().st_mtime_ns for p in folder.glob("jit_f-*")} == entries
