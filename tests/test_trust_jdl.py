"""Issue 11, finding 4 and part of 6/7: definitions belong to who may see them.

* a proposal belongs to its proposer: another user proposing the same name gets 409;
* an admin validates the version they reviewed: the request carries its SHA-256 digest;
* definition names follow one strict pattern (no dots: ``x.meta`` cannot overwrite x's metadata);
* ``/jdl/<name>`` (every format, scripts included) only for callers granted the definition;
* parameter and input names: an allow-list pattern plus a deny-list of runtime variables, tested
  against a corpus of dangerous names and of ordinary astronomy names.

Every attack goes through HTTP against the real application (an in-process LiveServer).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from conftest import ApiServer, make_settings, signed_in_sessions

SCRIPT_ALICE = "echo written-by-alice > out.txt\n"
SCRIPT_BOB = "cat /etc/passwd > out.txt  # written-by-bob\n"

#: Runtime variables that change how a program (shell, loader, interpreter, library) behaves.
#: Each must be refused as a parameter or input name, whatever its case.
DANGEROUS = """
LD_PRELOAD LD_LIBRARY_PATH LD_AUDIT LD_DEBUG_OUTPUT DYLD_INSERT_LIBRARIES
PERL5OPT PERL5LIB PERLLIB PERL5DB PERL_UNICODE
NODE_OPTIONS NODE_PATH NODE_EXTRA_CA_CERTS
GCONV_PATH GLIBC_TUNABLES MALLOC_CHECK_ MALLOC_ARENA_MAX LOCPATH NLSPATH
PYTHONWARNINGS PYTHONPATH PYTHONSTARTUP PYTHONHOME PYTHONINSPECT PYTHONBREAKPOINT PYTHONSAFEPATH
RUBYOPT RUBYLIB GEM_HOME BUNDLE_GEMFILE
JAVA_TOOL_OPTIONS _JAVA_OPTIONS JDK_JAVA_OPTIONS JAVA_HOME CLASSPATH JAVA_OPTS
BASH_ENV BASH_FUNC_x ENV IFS PATH HOME SHELL SHELLOPTS BASHOPTS CDPATH GLOBIGNORE PROMPT_COMMAND
PS1 PS2 PS3 PS4 TERM TERMINFO TERMINFO_DIRS TMPDIR TMP TEMP USER LOGNAME PWD OLDPWD
OPENSSL_CONF OPENSSL_ENGINES SSL_CERT_FILE SSL_CERT_DIR SSLKEYLOGFILE CURL_CA_BUNDLE REQUESTS_CA_BUNDLE
R_PROFILE R_PROFILE_USER R_LIBS R_HOME TCLLIBPATH TCL_LIBRARY TK_LIBRARY LUA_PATH LUA_INIT
GIT_SSH GIT_SSH_COMMAND GIT_EXEC_PATH GIT_CONFIG_GLOBAL
LC_ALL LC_NUMERIC LC_CTYPE LANG LANGUAGE TZ TZDIR HOSTALIASES RES_OPTIONS LOCALDOMAIN
HTTP_PROXY https_proxy ALL_PROXY no_proxy
XDG_CONFIG_HOME XDG_DATA_DIRS EDITOR VISUAL PAGER BROWSER LESSOPEN
MAKEFLAGS MAKEFILES OMP_NUM_THREADS HDF5_PLUGIN_PATH GTK_MODULES QT_PLUGIN_PATH GIO_EXTRA_MODULES
IDL_STARTUP IDL_PATH GDL_STARTUP PFILES PIP_INDEX_URL CONDA_PREFIX VIRTUAL_ENV
OPUS_JOB_ID OPUS_PARAMETERS OPUS_WORK_DIR OPUS_PYTHON
SLURM_JOB_ID SBATCH_ACCOUNT SRUN_CPUS_PER_TASK OMPI_MCA_plm PMIX_MCA_x
DOTNET_STARTUP_HOOKS CORECLR_PROFILER COMPlus_x GODEBUG GOFLAGS
OPTIND OPTARG OPTERR HISTFILE INPUTRC POSIXLY_CORRECT TMOUT FUNCNEST EXECIGNORE
DISPLAY XAUTHORITY SSH_AUTH_SOCK GNUPGHOME KRB5CCNAME KRB5_CONFIG NETRC WGETRC CURL_HOME
""".split()

#: Ordinary parameter names of astronomy jobs: all must be accepted.
ORDINARY = """
RA Dec ra dec glon glat nxpix nypix binsz infile outfile events text message status seconds
p_string p_int p_file path_out outdir obs_id obs_ids energy_min energy_max emin emax
radius width height size npix nside order frame coordsys proj timeref tstart tstop mjd_start
redshift z snr threshold sigma fwhm band filter exposure livetime irf model spectrum
lightcurve catalog table query maxrec format columns source_name target Name DEC_J2000 RA_J2000
home_dir shell_script path_in user_id env_name language_code terminal ifs_mode
""".split()


def _definition(name: str, script: str, version: str = "1", **extra) -> dict:
    return {"name": name, "version": version, "script": script, **extra,
            "generated": {"out": {"file": "out.txt", "content_type": "text/plain"}}}


@pytest.fixture
def srv(tmp_path):
    server = ApiServer(make_settings(tmp_path))
    server.as_ = signed_in_sessions(server, (("root", {"admin": True}), ("alice", {"editor": True}),
                                             ("bob", {"editor": True}), ("carol", {"jobdefs": ["dummy"]})))
    yield server
    server.stop()


def _proposal_file(srv, name: str) -> Path:
    return Path(srv.settings.JDL_DIR) / "proposals" / f"{name}.json"


def _listed(srv, who: str, name: str) -> dict:
    r = srv.as_[who].get(f"{srv.url}/jdl/proposals")
    assert r.status_code == 200, r.text
    (found,) = [p for p in r.json()["proposals"] if p["name"] == name]
    return found


# ---- proposals belong to their proposer ----------------------------------------------------------------
def test_another_users_proposal_of_the_same_name_is_refused(srv):
    alice, bob = srv.as_["alice"], srv.as_["bob"]
    assert alice.post(f"{srv.url}/jdl", json=_definition("shared", SCRIPT_ALICE)).status_code == 201
    r = bob.post(f"{srv.url}/jdl", json=_definition("shared", SCRIPT_BOB, version="2"))
    assert r.status_code == 409, r.text
    assert "alice" not in r.text  # bob learns that the name is taken, not by whom
    # the same through a multipart upload and in another format
    r = bob.post(f"{srv.url}/jdl", files={"file": ("shared.json", json.dumps(_definition("shared", SCRIPT_BOB)))})
    assert r.status_code == 409, r.text
    doc = srv.as_["root"].get(f"{srv.url}/jdl/proposals/shared", params={"format": "json"}).json()
    assert doc["script"] == SCRIPT_ALICE and doc["version"] == "1"
    assert _listed(srv, "root", "shared")["proposer"] == "alice"
    # the proposer may replace her own; an admin may reject it, after which the name is free
    assert alice.post(f"{srv.url}/jdl", json=_definition("shared", SCRIPT_ALICE, version="1b")).status_code == 201
    assert srv.as_["root"].post(f"{srv.url}/jdl", json=_definition("shared", SCRIPT_BOB)).status_code == 409
    assert srv.as_["root"].delete(f"{srv.url}/jdl/proposals/shared", allow_redirects=False).status_code == 303
    assert bob.post(f"{srv.url}/jdl", json=_definition("shared", SCRIPT_BOB)).status_code == 201


def test_a_recreated_user_name_does_not_own_the_deleted_accounts_proposal(srv):
    """Proposals belong to the account (its id is never reused), not to the name."""
    import requests

    alice, root = srv.as_["alice"], srv.as_["root"]
    assert alice.post(f"{srv.url}/jdl", json=_definition("legacy", SCRIPT_ALICE)).status_code == 201
    assert root.delete(f"{srv.url}/admin/users/alice").status_code == 200
    r = root.post(f"{srv.url}/admin/users", json={"name": "alice", "editor": True})
    assert r.status_code == 201, r.text
    new = requests.Session()
    new.auth = ("alice", r.json()["token"])
    assert new.get(f"{srv.url}/jdl/proposals/legacy").status_code == 403
    assert "legacy" not in new.get(f"{srv.url}/jdl/proposals").text
    assert new.post(f"{srv.url}/jdl", json=_definition("legacy", SCRIPT_BOB, version="2")).status_code == 409
    assert new.delete(f"{srv.url}/jdl/proposals/legacy", allow_redirects=False).status_code == 403
    doc = root.get(f"{srv.url}/jdl/proposals/legacy", params={"format": "json"}).json()
    assert doc["script"] == SCRIPT_ALICE


# ---- validation names the version the admin reviewed ---------------------------------------------------
def test_an_admin_validates_the_digest_they_were_shown(srv):
    alice, root = srv.as_["alice"], srv.as_["root"]
    r = alice.post(f"{srv.url}/jdl", json=_definition("reviewed", SCRIPT_ALICE))
    assert r.status_code == 201, r.text
    stored = hashlib.sha256(_proposal_file(srv, "reviewed").read_bytes()).hexdigest()
    assert r.json()["digest"] == stored
    shown = _listed(srv, "root", "reviewed")["digest"]
    assert shown == stored == _listed(srv, "alice", "reviewed")["digest"]
    got = root.get(f"{srv.url}/jdl/proposals/reviewed", params={"format": "json"})
    assert got.headers["OPUS-Proposal-Digest"] == stored

    validate = f"{srv.url}/jdl/proposals/reviewed/validate"
    r = root.post(validate, allow_redirects=False)
    assert r.status_code == 400 and "digest" in r.text
    r = root.post(validate, data={"digest": "not-a-digest"}, allow_redirects=False)
    assert r.status_code == 400 and "digest" in r.text
    r = root.post(validate, data={"digest": "0" * 64}, allow_redirects=False)
    assert r.status_code == 409, r.text
    assert srv.as_["alice"].post(f"{srv.url}/rest/reviewed").status_code == 404  # nothing went live

    # the proposer changes it after the admin looked: the digest the admin saw no longer validates
    assert alice.post(f"{srv.url}/jdl", json=_definition("reviewed", SCRIPT_BOB, version="2")).status_code == 201
    r = root.post(validate, data={"digest": shown}, allow_redirects=False)
    assert r.status_code == 409 and "changed" in r.text
    assert srv.as_["alice"].post(f"{srv.url}/rest/reviewed").status_code == 404
    # a view pinned to the digest shown (the admin page's "View" link) does not show the new document
    r = root.get(f"{srv.url}/jdl/proposals/reviewed", params={"format": "json", "digest": shown})
    assert r.status_code == 409 and SCRIPT_BOB not in r.text

    # reviewed again: the new digest (as a query parameter too) makes exactly that document live
    alice.post(f"{srv.url}/jdl", json=_definition("reviewed", SCRIPT_ALICE, version="3"))
    shown = _listed(srv, "root", "reviewed")["digest"]
    r = root.post(validate, params={"digest": shown.upper()}, allow_redirects=False)
    assert r.status_code == 303, r.text
    live = root.get(f"{srv.url}/jdl/reviewed", params={"format": "json"}).json()
    assert live["script"] == SCRIPT_ALICE and live["version"] == "3"


# ---- one strict name pattern ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["x.meta", "x.y", "_x", "1x", "x/y", "x" * 65, "x y", "é"])
def test_definition_names_with_dots_or_other_characters_are_refused(srv, name):
    alice = srv.as_["alice"]
    assert alice.post(f"{srv.url}/jdl", json=_definition("x", SCRIPT_ALICE)).status_code == 201
    meta = _proposal_file(srv, "x").with_name("x.meta.json").read_bytes()
    r = srv.as_["bob"].post(f"{srv.url}/jdl", json=_definition(name, SCRIPT_BOB))
    assert r.status_code == 400, r.text
    assert "job definition name" in r.text
    assert _proposal_file(srv, "x").with_name("x.meta.json").read_bytes() == meta
    assert _listed(srv, "root", "x")["proposer"] == "alice"
    assert sorted(p.name for p in _proposal_file(srv, "x").parent.iterdir() if not p.name.startswith(".")) \
        == ["x.json", "x.meta.json"]


def test_misnamed_definition_files_are_not_offered_and_are_named_in_the_log(srv, caplog):
    jdl = Path(srv.settings.JDL_DIR)
    doc = json.loads((jdl / "dummy.json").read_text())
    (jdl / "my.dummy.json").write_text(json.dumps({**doc, "name": "my.dummy"}))
    (jdl / "versions" / "old.name").mkdir(parents=True)
    with caplog.at_level(logging.ERROR, logger="opus.jobdef.registry"):
        names = [d["name"] for d in srv.as_["root"].get(f"{srv.url}/jdl").json()["jobDefinitions"]]
    assert "my.dummy" not in names and "dummy" in names
    assert "my.dummy.json" in caplog.text
    assert srv.as_["root"].get(f"{srv.url}/jdl/my.dummy").status_code == 404
    assert sorted(p.name for p in srv.services.registry.misnamed_files()) == ["my.dummy.json", "old.name"]


# ---- /jdl/<name> only for callers granted the definition ------------------------------------------------
def test_a_definition_is_shown_only_to_callers_granted_it(srv):
    carol, root = srv.as_["carol"], srv.as_["root"]
    script = srv.services.registry.get("copy").script
    for params in ({}, {"format": "json"}, {"format": "wadl"}, {"format": "votable"}, {"version": "1.0"}):
        r = carol.get(f"{srv.url}/jdl/copy", params=params)
        assert r.status_code == 403, (params, r.text)
        assert script.strip() not in r.text and "infile" not in r.text
    r = carol.get(f"{srv.url}/jdl/copy/versions")
    assert r.status_code == 403 and "versions" not in r.text
    # the same answer as the job list gives her for that definition
    assert carol.post(f"{srv.url}/rest/copy").status_code == 403
    assert [d["name"] for d in carol.get(f"{srv.url}/jdl").json()["jobDefinitions"]] == ["dummy"]
    assert carol.get(f"{srv.url}/jdl/dummy", params={"format": "json"}).status_code == 200
    assert carol.get(f"{srv.url}/jdl/nosuch").status_code == 404
    r = root.get(f"{srv.url}/jdl/copy", params={"format": "json"})
    assert r.status_code == 200 and r.json()["script"] == script
    assert srv.as_["alice"].get(f"{srv.url}/jdl/copy/versions").status_code == 200


# ---- parameter and input names -------------------------------------------------------------------------
def test_a_definition_with_a_runtime_variable_as_parameter_is_refused_at_proposal(srv):
    for where in ("parameters", "used"):
        doc = _definition("sneaky", "perl -e 1\n", **{where: {"PERL5OPT": {}}})
        r = srv.as_["alice"].post(f"{srv.url}/jdl", json=doc)
        assert r.status_code == 400, r.text
        assert "PERL5OPT" in r.text and "reserved" in r.text
    assert srv.services.registry.proposals() == []


def test_the_corpus_of_dangerous_names_is_refused_and_ordinary_names_are_accepted(srv):
    assert len(DANGEROUS) >= 60 and len(set(DANGEROUS)) == len(DANGEROUS)
    alice = srv.as_["alice"]
    accepted = []
    for name in DANGEROUS:
        for variant in {name, name.lower()}:
            r = alice.post(f"{srv.url}/jdl", json=_definition("corpus", "true\n", parameters={variant: {}}))
            if r.status_code != 400:
                accepted.append((variant, r.status_code))
            alice.delete(f"{srv.url}/jdl/proposals/corpus")
    assert accepted == []
    refused = []
    for name in ORDINARY:
        r = alice.post(f"{srv.url}/jdl", json=_definition("corpus", "true\n", used={name: {}}))
        if r.status_code != 201:
            refused.append((name, r.text.strip()))
        alice.delete(f"{srv.url}/jdl/proposals/corpus")
    assert refused == []


def test_an_old_definition_with_a_runtime_variable_cannot_create_jobs(srv):
    """A file written before the rule (or by hand) is refused where it is loaded: no job runs it."""
    jdl = Path(srv.settings.JDL_DIR)
    (jdl / "oldenv.json").write_text(json.dumps(_definition("oldenv", "true\n", parameters={
        "NODE_OPTIONS": {"default": "--require /tmp/x.js"}})))
    before = len(srv.services.store.list(None))
    r = srv.as_["alice"].post(f"{srv.url}/rest/oldenv", data={"PHASE": "RUN"}, allow_redirects=False)
    assert r.status_code not in (200, 201, 303), r.text
    assert "NODE_OPTIONS" in r.text
    assert len(srv.services.store.list(None)) == before
    assert "oldenv" not in [d["name"] for d in srv.as_["root"].get(f"{srv.url}/jdl").json()["jobDefinitions"]]
