"""`python -m jaxseg.main`: config errors stop it before any work (its runs are
exercised end to end by tests/test_fault_injection.py)."""

from tests.helpers import run_module


def test_unknown_config_key_fails_before_any_work(tmp_path):
  out = run_module(
    "jaxseg.main",
    "--config=configs/psp.py",
    f"--workdir={tmp_path / 'run'}",
    "--config.does_not_exist=1",
  )
  assert out.returncode != 0
  assert "--config.does_not_exist=1: the config has no field 'does_not_exist'" in out.stderr
  assert "Traceback" not in out.stderr
  assert not (tmp_path / "run").exists()


def test_a_value_of_the_wrong_type_fails_naming_the_field(tmp_path):
  out = run_module(
    "jaxseg.main",
    "--config=configs/psp.py",
    f"--workdir={tmp_path / 'run'}",
    "--config.batch_size=many",
  )
  assert out.returncode != 0 and "--config.batch_size=many" in out.stderr
  assert not (tmp_path / "run").exists()
