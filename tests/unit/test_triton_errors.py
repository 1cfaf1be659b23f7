import pytest
from tritonclient.utils import InferenceServerException

from workers.errors import InferenceRejected, InferenceUnavailable
from workers.inference.triton import map_error


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("StatusCode.UNAVAILABLE", InferenceUnavailable),
        ("StatusCode.DEADLINE_EXCEEDED", InferenceUnavailable),
        ("StatusCode.RESOURCE_EXHAUSTED", InferenceUnavailable),
        ("StatusCode.NOT_FOUND", InferenceUnavailable),
        ("StatusCode.INVALID_ARGUMENT", InferenceRejected),
        ("StatusCode.INTERNAL", InferenceRejected),
        (None, InferenceUnavailable),
    ],
)
def test_grpc_status_maps_to_retriability(status: str | None, kind: type) -> None:
    err = map_error(InferenceServerException("boom", status=status))
    assert isinstance(err, kind)
    assert err.retriable is (kind is InferenceUnavailable)
    assert "boom" in err.detail
