def test_dummy_job_runs_to_completion(live):
    url = live.create("dummy", {"text": "hi"}, run=True)
    assert live.wait_final(url) == "COMPLETED"
    assert live.http.get(url + "/results/output").text == "hi\n"
