"""Resource limits explained: which limit stopped a worker, and the process budget."""

import os

import pytest

from edgebook.gateway.limits import check_budget, explain_failure, user_tasks
from edgebook.gateway.spec import DeployRejected
from edgebook.sandbox import Limits, Sandbox, SandboxUser

NOBODY = Sandbox(SandboxUser(65534, 65534, "nobody"))
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
