"""A full cell's cathode in the lab file: validated like the -p parameters, and what 1 C means."""

from __future__ import annotations

import pytest

from labctl.config import LabConfigError, load_lab
from labctl.params import ParameterError
from labctl.runner import prepare_run

LAB = """
[defaults]
cell = { area = 1.54, thickness = 60, cathode = "nmc", loading = 10.0, specific_capacity = 175, v_max = 4.25 }

[instruments.smu]
driver = "keithley2450"
resource = "TCPIP::127.0.0.1::5025::SOCKET"

[instruments.smu.channels.1]
max_current = 1.0
"""


def test_the_lab_files_cathode_sets_one_c(tmp_path):
    """1 C = 175 mAh/g × 10 mg/cm² × 1.54 cm² = 2.695 mA: above the channel's 1 mA, so the run is
    refused before the instrument is touched, and the message shows the current the cathode gave."""
    path = tmp_path / "lab.toml"
    path.write_text(LAB)
    lab = load_lab(path)
    assert lab.cell["loading"] == 10.0 and lab.cell["cathode"] == "nmc"
    with pytest.raises(ParameterError, match=r"2\.695 mA"):
        prepare_run("long_cycling", params={"cycles": "1"}, instrument="smu:1", lab=lab, out_dir=tmp_path)
    # a -p parameter wins over the lab file: 5 mg/cm² -> 1.348 mA
    with pytest.raises(ParameterError, match=r"1\.348 mA"):
        prepare_run("long_cycling", params={"loading": "5"}, instrument="smu:1", lab=lab, out_dir=tmp_path)
    assert not list(tmp_path.glob("*.h5"))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("loading = 10.0", "loading = -2"),
        ('cathode = "nmc"', 'cathode = "nca9"'),
        ("specific_capacity = 175", 'specific_capacity = "lots"'),
        ("v_max = 4.25", "v_max = 9"),
    ],
)
def test_bad_cathode_in_the_lab_file_names_the_key(tmp_path, change, fragment):
    path = tmp_path / "lab.toml"
    path.write_text(LAB.replace(change, fragment))
    key = fragment.split(" =")[0]
    with pytest.raises(LabConfigError, match=rf"defaults\.cell\.{key}:.*allowed"):
        load_lab(path)
