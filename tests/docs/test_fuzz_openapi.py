"""A bounded fuzz of every operation in docs/openapi.yaml against the running functions: no 5xx, and no
answer that breaks the spec (status, content type, body schema, headers).

Schema-valid requests may still be refused for reasons no schema can state (a well-formed number that is
not a real one, a sender the tenant does not own), so the check that every schema-valid request gets a
2xx is left out; every answer must still be one the spec documents."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import ROOT

# Against the running functions: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack

schema = schemathesis.openapi.from_path(ROOT / "docs/openapi.yaml")


@schema.parametrize()
@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_api_conforms_under_fuzzing(case, env):
    headers = {"X-API-Key": env.api_key} if case.operation.path != "/webhooks/telnyx" else {}
    case.call_and_validate(base_url=env.stack.urls["gateway"], headers=headers,
                           excluded_checks=[positive_data_acceptance])
