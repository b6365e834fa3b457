"""Control parameters as the original OPUS took them: ``slurm_ntasks-per-node``, memory in ``1gb``, ``uws_quote``.

Checked at the two places a value enters (opus.jobdef.slurm_options), then through HTTP on a server
configured for SLURM (its manager faked: what is checked here is the creation request, not sbatch).
"""

import pytest

from opus.errors import BadRequest
from opus.jobdef.slurm_options import check_option, sbatch_flags
from tests.conftest import ApiServer, make_settings


@pytest.mark.parametrize("given, kept", [("1gb", "1G"), ("500M", "500M"), ("500mb", "500M"), ("4G", "4G"),
                                         ("2048", "2048"), ("1tb", "1T"), ("64k", "64K")])
def test_memory_takes_units_with_an_optional_b(given, kept):
    assert check_option("mem", given, "slurm_mem") == kept


@pytest.mark.parametrize("bad", ["1b", "0G", "1.5G", "G", "1gbb", "-1G", "1 G"])
def test_memory_that_slurm_would_misread_is_refused(bad):
    with pytest.raises(BadRequest, match="slurm_mem"):
        check_option("mem", bad, "slurm_mem")


def test_hyphenated_and_underscored_names_are_one_option():
    assert check_option("ntasks-per-node", "16", "x") == check_option("ntasks_per_node", "16", "x") == "16"
    assert check_option("cpus-per-task", "2", "x") == "2"
    assert sbatch_flags({"ntasks-per-node": "16", "cpus-per-task": "2", "mem": "1G"}) == [
        "--cpus-per-task=2", "--ntasks-per-node=16", "--mem=1G"]


@pytest.fixture
def slurm_api(tmp_path):
    server = ApiServer(make_settings(tmp_path, MANAGER="slurm"))
    yield server
    server.stop()


def test_the_originals_spellings_are_accepted_at_creation(slurm_api):
    response = slurm_api.http.post(f"{slurm_api.url}/rest/dummy",
                                   data={"slurm_ntasks-per-node": "16", "slurm_mem": "1gb"},
                                   allow_redirects=False)
    assert response.status_code == 303, response.text
    parameters = slurm_api.http.get(response.headers["Location"] + "/parameters",
                                    headers={"Accept": "application/json"}).json()
    values = {p["id"]: p["value"] for p in parameters}
    assert values.get("slurm_ntasks-per-node") == "16"
    assert values.get("slurm_mem") == "1G"


def test_the_control_parameters_list_the_new_option(slurm_api):
    names = slurm_api.http.get(f"{slurm_api.url}/jdl/dummy", headers={"Accept": "application/json"}).text
    assert "slurm_ntasks_per_node" in names


def test_uws_quote_of_the_original_form_is_accepted_and_not_kept(slurm_api):
    response = slurm_api.http.post(f"{slurm_api.url}/rest/dummy", data={"uws_quote": "600", "text": "q"},
                                   allow_redirects=False)
    assert response.status_code == 303, response.text
    parameters = slurm_api.http.get(response.headers["Location"] + "/parameters",
                                    headers={"Accept": "application/json"}).json()
    assert {p["id"] for p in parameters} == {"text"}
