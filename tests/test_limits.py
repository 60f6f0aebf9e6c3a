"""Resource limits explained: which limit stopped a worker, and the process budget."""

import os

import pytest

from edgebook.gateway.limits import check_budget, explain_failure, user_tasks
from edgebook.gateway.spec import DeployRejected
from edgebook.sandbox import EndpointUsers, Limits, Sandbox, SandboxUser

NOBODY = Sandbox(SandboxUser(65534, 65534, "nobody"))
#: root's default: each endpoint's workers run as a uid of their own
PER_ENDPOINT = Sandbox(endpoint_users=EndpointUsers.parse("61184-65519"))
LAUNCHER_NPROC = ("worker exited with status 127 before sending its ready frame\n"
                  "edgebook-launch: cannot execute (the user is at its process limit): "
                  "/data/bin/abc")


def test_a_process_limit_names_the_shared_budget_and_what_to_do():
    cause = explain_failure(LAUNCHER_NPROC, Limits(processes=64), NOBODY)
    assert "the worker user nobody is at its process limit (limit_processes 64)" in cause
    assert "every endpoint of every gateway on this machine" in cause
    assert "edgebook gateways" in cause and "fewer workers" in cause


def test_a_process_limit_without_a_worker_user_names_the_users_own():
    cause = explain_failure(LAUNCHER_NPROC, Limits(processes=64), None)
    assert "your user is at its process limit" in cause


@pytest.mark.parametrize("stderr, option", [
    ("memory allocation of 1048576 bytes failed", "limit_address_space"),
    ("Error: Too many open files (os error 24)", "limit_open_files"),
    ("File too large (os error 27)", "limit_file_size"),
])
def test_other_limits_are_named(stderr, option):
    assert option in explain_failure(stderr, Limits(), NOBODY)


def test_an_unrelated_failure_blames_no_limit():
    assert explain_failure("thread 'main' panicked at src/main.rs:3", Limits(), NOBODY) is None


def test_workers_over_the_process_budget_are_refused():
    with pytest.raises(DeployRejected) as info:
        check_budget(64, Limits(processes=64), NOBODY)
    assert info.value.status == 400 and info.value.error_type == "over_process_limit"
    assert "workers=64 cannot start" in info.value.message
    check_budget(8, Limits(processes=64), NOBODY)
    check_budget(64, Limits(processes=None), NOBODY)  # no limit
    check_budget(64, Limits(processes=64), None)  # no worker user: RLIMIT_NPROC is not ours


def test_user_tasks_counts_this_process_and_its_threads():
    assert user_tasks(os.getuid()) >= 1


def test_with_a_uid_per_endpoint_the_budget_is_the_endpoints_own():
    check_budget(3, Limits(processes=3), PER_ENDPOINT, "pets")  # nothing else runs as it
    with pytest.raises(DeployRejected) as info:
        check_budget(4, Limits(processes=3), PER_ENDPOINT, "pets")
    uid = PER_ENDPOINT.user_for("pets").uid
    assert f"pets's workers run as uid {uid}" in info.value.message
    assert "needs 4" in info.value.message and "at least 4" in info.value.message


def test_a_reload_counts_the_workers_it_replaces_and_every_process():
    with pytest.raises(DeployRejected) as info:
        check_budget(2, Limits(processes=3), PER_ENDPOINT, "pets", running=2)
    assert "needs 4" in info.value.message
    assert "while the 2 workers of the revision it replaces still run" in info.value.message
    check_budget(1, Limits(processes=3), PER_ENDPOINT, "pets", running=2)
    with pytest.raises(DeployRejected) as info:
        check_budget(2, Limits(processes=3), PER_ENDPOINT, "pets", processes=2)
    assert "in each of 2 gateway processes" in info.value.message
    with pytest.raises(DeployRejected):
        check_budget(32, Limits(processes=64), NOBODY, processes=2)  # shared user: 64 in all


def test_a_process_limit_of_an_endpoints_own_uid_names_the_reload():
    cause = explain_failure(LAUNCHER_NPROC, Limits(processes=3), PER_ENDPOINT, "pets")
    uid = PER_ENDPOINT.user_for("pets").uid
    assert f"the workers of pets run as uid {uid}, which is at its process limit" in cause
    assert "the old revision's workers too" in cause
    assert "your user" not in cause and "every gateway on this machine" not in cause
