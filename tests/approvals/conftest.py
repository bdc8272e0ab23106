from __future__ import annotations

import pytest

from accounts.roles import Role
from accounts.services import edit_token_rotate
from reconciliation.services import root_causes_ensure, run_reconcile
from tests.conftest import token_client
from tests.factories import member
from tests.reconciliation.conftest import LineMaker


@pytest.fixture
def lines(organization, facility, manager) -> LineMaker:
    root_causes_ensure(organization=organization)
    return LineMaker(organization, facility, manager)


@pytest.fixture
def second_manager(organization):
    return member(organization, Role.MANAGER, username="manager2")


@pytest.fixture
def finance_user(organization):
    return member(organization, Role.FINANCE, username="finance")


def signer(user):
    """An API client for `user` carrying their freshly issued edit token."""
    client = token_client(user)
    client.credentials(HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"],
                       HTTP_X_EDIT_TOKEN=edit_token_rotate(user=user))  # fmt: skip
    return client


def reconciled(lines, manager, **line):
    made = lines.line(**line)
    run_reconcile(run=lines.run, actor=manager)
    return made.variances.get().proposal
