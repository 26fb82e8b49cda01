"""One rule for PATCH fields that may be left out but not sent as null, in every feature."""

import pytest
from pydantic import BaseModel, ValidationError

from taskapi.auth.schemas import UserUpdate
from taskapi.categories.schemas import CategoryUpdate
from taskapi.core.schemas import NOT_NULL_MESSAGE
from taskapi.tasks.schemas import TaskUpdate

OMITTABLE_FIELDS = [
    (UserUpdate, "full_name"),
    (CategoryUpdate, "name"),
    (CategoryUpdate, "color"),
    (TaskUpdate, "title"),
    (TaskUpdate, "status"),
    (TaskUpdate, "priority"),
]


@pytest.mark.parametrize(("model", "field"), OMITTABLE_FIELDS)
def test_null_is_refused_with_the_same_message_everywhere(
    model: type[BaseModel], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate({field: None})
    errors = [(error["loc"], error["msg"]) for error in caught.value.errors()]
    assert errors == [((field,), f"Value error, {NOT_NULL_MESSAGE}")]


@pytest.mark.parametrize(("model", "field"), OMITTABLE_FIELDS)
def test_absent_is_not_a_change_and_the_document_offers_no_null(
    model: type[BaseModel], field: str
) -> None:
    assert model.model_validate({}).model_dump(exclude_unset=True) == {}
    schema = model.model_json_schema()["properties"][field]
    assert "anyOf" not in schema
    assert "default" not in schema
    assert schema.get("type") != "null"
