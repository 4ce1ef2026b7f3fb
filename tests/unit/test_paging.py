import pytest

from shared.rules.errors import ApiError, ErrorCode
from shared.rules.paging import page_query


def test_defaults_and_a_given_limit_and_cursor():
    assert page_query({}) == (50, None)
    assert page_query({"limit": ["7"], "cursor": ["abc"]}) == (7, "abc")
    assert page_query({"limit": ["200"], "cursor": [""]}) == (200, None)


@pytest.mark.parametrize("args, field", [
    ({"limit": ["0"]}, "limit"), ({"limit": ["201"]}, "limit"), ({"limit": ["-1"]}, "limit"),
    ({"limit": ["ten"]}, "limit"), ({"page": ["2"]}, "page"),
])
def test_a_bad_query_is_a_400_naming_the_parameter(args, field):
    with pytest.raises(ApiError) as caught:
        page_query(args)
    assert caught.value.code == ErrorCode.VALIDATION_ERROR and caught.value.details[0]["field"] == field
